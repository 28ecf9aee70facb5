// What the launcher derives for the retrievers and the worker from a run's plan (launcher/ranks/
// retriever_setup.h): the forms in which the prefill's keys and values travel (kv_wire_format), per side,
// from the stores' dtypes and the checkpoint's; every form chosen is one its store takes.

#include <gtest/gtest.h>

#include <string>

#include "cpu_retriever/kv_rows.h"
#include "launcher/ranks/retriever_setup.h"

namespace ra {
namespace {

using retriever::KvDtype;
using retriever::KvDtypes;

TEST(RetrieverSetup, KvWireFormatCodesEachSideForItsStore) {
  // int8 stores take int8 rows, coded on the worker (or its GPU), whatever the checkpoint.
  EXPECT_EQ(kv_wire_format("BF16", KvDtype::kQ8), (KvWireFormat{WireRows::kQ8, WireRows::kQ8}));
  EXPECT_EQ(kv_wire_format("F32", KvDtype::kQ8), (KvWireFormat{WireRows::kQ8, WireRows::kQ8}));
  // bf16 stores of a bf16 checkpoint's KV: bf16, exact; of another checkpoint's: float32 (the store rounds).
  EXPECT_EQ(kv_wire_format("BF16", KvDtype::kBF16), (KvWireFormat{WireRows::kBF16, WireRows::kBF16}));
  EXPECT_EQ(kv_wire_format("F16", KvDtype::kBF16), (KvWireFormat{WireRows::kF32, WireRows::kF32}));
  // f16 and f32 stores: float32 (bf16 would be a second rounding).
  EXPECT_EQ(kv_wire_format("BF16", KvDtype::kF16), (KvWireFormat{WireRows::kF32, WireRows::kF32}));
  EXPECT_EQ(kv_wire_format("BF16", KvDtype::kF32), (KvWireFormat{WireRows::kF32, WireRows::kF32}));
  // Each side on its own: int8 keys with bf16 values.
  EXPECT_EQ(kv_wire_format("BF16", KvDtypes(KvDtype::kQ8, KvDtype::kBF16)),
            (KvWireFormat{WireRows::kQ8, WireRows::kBF16}));
  EXPECT_EQ(kv_wire_format("F32", KvDtypes(KvDtype::kBF16, KvDtype::kQ8)),
            (KvWireFormat{WireRows::kF32, WireRows::kQ8}));
}

TEST(RetrieverSetup, EveryKvWireFormatIsOneItsStoresTake) {
  const KvDtype stores[] = {KvDtype::kBF16, KvDtype::kF16, KvDtype::kF32, KvDtype::kQ8};
  for (const std::string model : {"BF16", "F16", "F32"}) {
    for (const KvDtype k : stores) {
      for (const KvDtype v : stores) {
        const KvWireFormat f = kv_wire_format(model, KvDtypes(k, v));
        EXPECT_TRUE(retriever::takes_wire_rows(k, f.key)) << model << " " << retriever::kv_dtype_name(k);
        EXPECT_TRUE(retriever::takes_wire_rows(v, f.value)) << model << " " << retriever::kv_dtype_name(v);
      }
    }
  }
}

}  // namespace
}  // namespace ra
