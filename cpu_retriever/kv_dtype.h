#pragma once
// Element types of key and value rows on the CPU: bf16 or f16 as the model stores its KV (DESIGN §4),
// or float32 (a float32 checkpoint, and the benchmark's dumped vectors). Each comes with an element
// trait: its storage type, the exact widening to float32 that every scorer uses, and the
// round-to-nearest-even narrowing that writes a row.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "common/error.h"
#include "common/half.h"

namespace ra::retriever {

// kI8 is no KV storage type: it marks a graph's 8-bit navigation rows (navigation_keys.h), which only the
// graph search scores (with_search_elem); with_kv_elem refuses it.
enum class KvDtype : uint8_t { kBF16, kF16, kF32, kI8 };

// A checkpoint's dtype string -> KvDtype: "F16" -> f16, "F32" -> f32, anything else ("BF16", and
// unknown strings) -> bf16, the dtype Llama checkpoints are trained in.
inline KvDtype kv_dtype_for(std::string_view checkpoint_dtype) {
  if (checkpoint_dtype == "F16") return KvDtype::kF16;
  if (checkpoint_dtype == "F32") return KvDtype::kF32;
  return KvDtype::kBF16;
}

inline size_t kv_dtype_bytes(KvDtype dtype) {
  return dtype == KvDtype::kF32 ? sizeof(float) : dtype == KvDtype::kI8 ? 1 : sizeof(uint16_t);
}

struct Bf16Elem {
  using T = uint16_t;
  static constexpr KvDtype kDtype = KvDtype::kBF16;
  static float widen(T bits) { return to_float(bf16{bits}); }
  static T narrow(float x) { return to_bf16(x).bits; }
};
struct F16Elem {
  using T = uint16_t;
  static constexpr KvDtype kDtype = KvDtype::kF16;
  // to_float(f16) without branches, so scoring loops vectorise: a finite half's exponent and mantissa
  // shifted into a float and scaled by 2^112 is its value exactly (subnormals too: the product is a
  // normal float; no -ffast-math, so no denormals-are-zero); inf and NaN are rebuilt by a select.
  // Equal to to_float for all 65,536 inputs (kv_dtype_test).
  static float widen(T bits) {
    const uint32_t em = bits & 0x7fffu;
    const uint32_t finite = std::bit_cast<uint32_t>(std::bit_cast<float>(em << 13) * 0x1p112f);
    const uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);
    const uint32_t is_special = 0u - static_cast<uint32_t>(em >= 0x7c00u);  // all ones or zero: a select
    return std::bit_cast<float>((special & is_special) | (finite & ~is_special) |
                                (static_cast<uint32_t>(bits & 0x8000u) << 16));
  }
  static T narrow(float x) { return to_f16(x).bits; }
};
struct F32Elem {
  using T = float;
  static constexpr KvDtype kDtype = KvDtype::kF32;
  static float widen(T x) { return x; }
  static T narrow(float x) { return x; }
};
// Navigation rows: int8 codes whose scales the query carries (navigation_keys.h); no narrow(): the
// quantiser needs the channel scales.
struct I8Elem {
  using T = int8_t;
  static constexpr KvDtype kDtype = KvDtype::kI8;
  static float widen(T x) { return static_cast<float>(x); }
};

// Calls f(Elem{}) with the element trait of dtype and returns its result: one switch outside a loop,
// so the loop itself is compiled once per type.
template <typename F>
decltype(auto) with_kv_elem(KvDtype dtype, F&& f) {
  switch (dtype) {
    case KvDtype::kBF16:
      return f(Bf16Elem{});
    case KvDtype::kF16:
      return f(F16Elem{});
    case KvDtype::kI8:
      RA_ASSERT_MSG(false, "8-bit navigation rows are scored by the graph search only");
      break;
    case KvDtype::kF32:
      break;
  }
  return f(F32Elem{});
}

// with_kv_elem, and the navigation rows' I8Elem: for the graph search's scorers.
template <typename F>
decltype(auto) with_search_elem(KvDtype dtype, F&& f) {
  if (dtype == KvDtype::kI8) return f(I8Elem{});
  return with_kv_elem(dtype, std::forward<F>(f));
}

// Widens n elements of a row of type dtype: out: [n] float32.
inline void widen_row(KvDtype dtype, const void* row, int64_t n, float* out) {
  with_kv_elem(dtype, [&](auto e) {
    using E = decltype(e);
    const auto* r = static_cast<const typename E::T*>(row);
    for (int64_t j = 0; j < n; ++j) out[j] = E::widen(r[j]);
  });
}

}  // namespace ra::retriever
