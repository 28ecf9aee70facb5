#pragma once
// Element types of key and value rows on the CPU: bf16 or f16 as the model stores its KV (DESIGN §4),
// float32 (a float32 checkpoint, and the benchmark's dumped vectors), or int8 codes with one float32
// scale per row (kv_int8.h: a million tokens' KV in a retriever host's RAM). Each comes with a trait:
// its storage type, its row size, and the exact widening to float32 that every scorer uses, and for
// the 16/32-bit types the round-to-nearest-even narrowing that writes a row. Which forms of rows from
// the wire a store takes: kv_rows.h.
//
// Keys and values choose their dtypes separately (KvDtypes), e.g. int8 keys with bf16 values.

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/error.h"
#include "common/half.h"
#include "cpu_retriever/kv_int8.h"

namespace ra::retriever {

// kBF16, kF16, kF32, kQ8: KV storage. kQ8: int8 codes and a float32 scale per row (kv_int8.h), the
// dtype `--kv-dtype int8` names.
// kI8 is no KV storage type: it marks a graph's 8-bit navigation rows (navigation_keys.h, per-channel
// scales that the query carries), which only the graph search scores (with_search_elem).
enum class KvDtype : uint8_t { kBF16, kF16, kF32, kI8, kQ8 };

// The dtypes of a store's keys and of its values. One dtype converts implicitly: both the same.
struct KvDtypes {
  KvDtype key = KvDtype::kBF16;
  KvDtype value = KvDtype::kBF16;

  constexpr KvDtypes() = default;
  constexpr KvDtypes(KvDtype both) : key(both), value(both) {}  // NOLINT: one dtype for K and V
  constexpr KvDtypes(KvDtype k, KvDtype v) : key(k), value(v) {}
  bool operator==(const KvDtypes&) const = default;
};

// A checkpoint's dtype string -> KvDtype: "F16" -> f16, "F32" -> f32, anything else ("BF16", and
// unknown strings) -> bf16, the dtype Llama checkpoints are trained in.
inline KvDtype kv_dtype_for(std::string_view checkpoint_dtype) {
  if (checkpoint_dtype == "F16") return KvDtype::kF16;
  if (checkpoint_dtype == "F32") return KvDtype::kF32;
  return KvDtype::kBF16;
}

// A storage dtype's name: "bf16", "f16", "f32", "int8" ("i8-navigation" for kI8).
inline std::string_view kv_dtype_name(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBF16: return "bf16";
    case KvDtype::kF16: return "f16";
    case KvDtype::kF32: return "f32";
    case KvDtype::kI8: return "i8-navigation";
    case KvDtype::kQ8: return "int8";
  }
  return "?";
}

// "bf16" when keys and values share the dtype, else "<key>/<value>", e.g. "int8/bf16".
inline std::string kv_dtypes_name(KvDtypes d) {
  if (d.key == d.value) return std::string(kv_dtype_name(d.key));
  return std::string(kv_dtype_name(d.key)) + "/" + std::string(kv_dtype_name(d.value));
}

// The inverse of kv_dtypes_name, for `--kv-dtype`: "bf16", "f16", "f32" or "int8" for both, or
// "<key>/<value>" (e.g. "int8/bf16": int8 keys, bf16 values). Throws ra::Error naming the choices.
inline KvDtypes parse_kv_dtypes(std::string_view name) {
  auto one = [name](std::string_view s) {
    for (const KvDtype d : {KvDtype::kBF16, KvDtype::kF16, KvDtype::kF32, KvDtype::kQ8}) {
      if (s == kv_dtype_name(d)) return d;
    }
    raise("kv dtype '{}': expected bf16, f16, f32 or int8, or <key>/<value> such as int8/bf16", name);
  };
  const size_t slash = name.find('/');
  if (slash == std::string_view::npos) return KvDtypes(one(name));
  return KvDtypes(one(name.substr(0, slash)), one(name.substr(slash + 1)));
}

// Each trait: T, the stored element; kDtype; kRowExtra, the bytes a row carries after its dim elements.
struct Bf16Elem {
  using T = uint16_t;
  static constexpr KvDtype kDtype = KvDtype::kBF16;
  static constexpr size_t kRowExtra = 0;
  static float widen(T bits) { return to_float(bf16{bits}); }
  static T narrow(float x) { return to_bf16(x).bits; }
};
struct F16Elem {
  using T = uint16_t;
  static constexpr KvDtype kDtype = KvDtype::kF16;
  static constexpr size_t kRowExtra = 0;
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
  static constexpr size_t kRowExtra = 0;
  static float widen(T x) { return x; }
  static T narrow(float x) { return x; }
};
// Navigation rows: int8 codes whose scales the query carries (navigation_keys.h); no narrow(): the
// quantiser needs the channel scales.
struct I8Elem {
  using T = int8_t;
  static constexpr KvDtype kDtype = KvDtype::kI8;
  static constexpr size_t kRowExtra = 0;
  static float widen(T x) { return static_cast<float>(x); }
};
// int8 KV rows: codes, then the row's float32 scale (kv_int8.h). No per-element widen or narrow: both
// need the row's scale, so the row functions below take whole rows.
struct Q8Elem {
  using T = int8_t;
  static constexpr KvDtype kDtype = KvDtype::kQ8;
  static constexpr size_t kRowExtra = kQ8ScaleBytes;
};

// Bytes of one row of dim elements.
template <typename E>
constexpr size_t row_bytes(int64_t dim) {
  return static_cast<size_t>(dim) * sizeof(typename E::T) + E::kRowExtra;
}
// Row i of a block of rows of dim elements starting at base.
template <typename E>
inline const typename E::T* row_at(const void* base, int64_t i, int64_t dim) {
  return reinterpret_cast<const typename E::T*>(static_cast<const std::byte*>(base) +
                                                static_cast<size_t>(i) * row_bytes<E>(dim));
}

// Element bytes of a dtype (the codes' for int8 rows; kv_row_bytes adds the scale).
inline size_t kv_dtype_bytes(KvDtype dtype) {
  return dtype == KvDtype::kF32 ? sizeof(float) : dtype == KvDtype::kI8 || dtype == KvDtype::kQ8 ? 1 : sizeof(uint16_t);
}
inline size_t kv_row_bytes(KvDtype dtype, int64_t dim) {
  return static_cast<size_t>(dim) * kv_dtype_bytes(dtype) + (dtype == KvDtype::kQ8 ? kQ8ScaleBytes : 0);
}

// Calls f(Elem{}) with the element trait of dtype and returns its result: one switch outside a loop,
// so the loop itself is compiled once per type. Element types only (bf16, f16, f32: each element
// widens and narrows on its own); code that handles int8 rows too uses with_row_elem.
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
    case KvDtype::kQ8:
      RA_ASSERT_MSG(false, "int8 rows carry a scale per row: with_row_elem handles them");
      break;
    case KvDtype::kF32:
      break;
  }
  return f(F32Elem{});
}

// with_kv_elem, and the int8 rows' Q8Elem: for code that reads and writes rows through the row
// functions (row_bytes, row_at, dot.h, widen_row, narrow_row, add_scaled_row).
template <typename F>
decltype(auto) with_row_elem(KvDtype dtype, F&& f) {
  if (dtype == KvDtype::kQ8) return f(Q8Elem{});
  return with_kv_elem(dtype, std::forward<F>(f));
}

// with_row_elem, and the navigation rows' I8Elem: for the graph search's scorers.
template <typename F>
decltype(auto) with_search_elem(KvDtype dtype, F&& f) {
  if (dtype == KvDtype::kI8) return f(I8Elem{});
  return with_row_elem(dtype, std::forward<F>(f));
}

// One row widened to float32: row: dim elements of E (and an int8 row's scale), out: [dim].
template <typename E>
inline void widen_row_as(const typename E::T* row, int64_t dim, float* out) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    dequantise_q8_row(row, dim, out);
  } else {
    for (int64_t j = 0; j < dim; ++j) out[j] = E::widen(row[j]);
  }
}

// Widens n elements of a row of type dtype: out: [n] float32. For a bf16, f16 or f32 row any n (also
// several rows at once); for an int8 row n is the row's dim (its scale follows the codes).
inline void widen_row(KvDtype dtype, const void* row, int64_t n, float* out) {
  with_search_elem(dtype, [&](auto e) {
    using E = decltype(e);
    widen_row_as<E>(static_cast<const typename E::T*>(row), n, out);
  });
}

// Widens rows [0, n) of a block of rows of dim elements: out: [n][dim] float32.
inline void widen_rows(KvDtype dtype, const void* rows, int64_t n, int64_t dim, float* out) {
  with_search_elem(dtype, [&](auto e) {
    using E = decltype(e);
    for (int64_t i = 0; i < n; ++i) widen_row_as<E>(row_at<E>(rows, i, dim), dim, out + i * dim);
  });
}

// Writes x: [dim] float32 as one row of E at row (rounded to nearest even; int8: kv_int8.h's rule).
// Returns -1, or the index of an element an int8 row cannot code (not finite; nothing else fails).
template <typename E>
inline int64_t narrow_row(const float* x, int64_t dim, typename E::T* row) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    return quantise_q8_row(x, dim, row);
  } else {
    for (int64_t j = 0; j < dim; ++j) row[j] = E::narrow(x[j]);
    return -1;
  }
}

// o[d] += w · row[d] for d < dim, row widened: the value side of attention. For an int8 row the scale
// folds into the weight first, (w · scale) · code_d, so the row costs one product per element.
template <typename E>
inline void add_scaled_row(float w, const typename E::T* row, int64_t dim, float* o) {
  if constexpr (E::kDtype == KvDtype::kQ8) {
    const float ws = w * q8_row_scale(row, dim);
    for (int64_t d = 0; d < dim; ++d) o[d] += ws * static_cast<float>(row[d]);
  } else {
    for (int64_t d = 0; d < dim; ++d) o[d] += w * E::widen(row[d]);
  }
}

}  // namespace ra::retriever
