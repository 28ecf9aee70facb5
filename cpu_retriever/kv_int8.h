#pragma once
// int8 KV rows in the retriever's stores: the rule and the row layout are common/q8_row.h (shared with
// the worker, which may code the rows before they travel, and the CUDA backend, which codes them on the
// GPU). This header brings them into ra::retriever, where the stores and scorers use them.

#include "common/q8_row.h"

namespace ra::retriever {

using ra::dequantise_q8_row;
using ra::kQ8ScaleBytes;
using ra::q8_row_scale;
using ra::quantise_q8_row;

}  // namespace ra::retriever
