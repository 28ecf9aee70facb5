#pragma once
// The one order every index ranks its results by: higher score first, then lower id. A total order, so
// ties break the same way in flat, graph and BLAS searches and results are deterministic.
//
// A function object rather than a function, so that heap and sort calls get it inlined: as a plain
// inline function passed to std::push_heap / pop_heap GCC kept it out of line, about 11% of a graph
// search's time (perf, 16K bf16 keys).

namespace ra::retriever {

struct Better {
  // a, b: anything with .score and .id (e.g. Scored, a flat search's hit).
  template <typename Hit>
  [[gnu::always_inline]] bool operator()(const Hit& a, const Hit& b) const {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  }
};
inline constexpr Better better{};

}  // namespace ra::retriever
