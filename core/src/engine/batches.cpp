// Micro-batches (see batches.h).
#include "megahost/core/engine/batches.h"

#include "megahost/core/engine/bert_batches.h"
#include "megahost/core/engine/t5_batches.h"
#include "megahost/core/error.h"

namespace megahost::core {

uint64_t micro_batch_first_sample(uint64_t consumed, int64_t micro, int64_t micro_batch_size, int64_t dp,
                                  int64_t dp_rank) {
  return consumed + static_cast<uint64_t>(micro * micro_batch_size * dp + dp_rank * micro_batch_size);
}

at::Tensor to_device_async(const at::Tensor& t, const at::Device& device) {
  if (!device.is_cuda()) return t.to(device);
  // The caching host allocator keeps the pinned block until the copy has run.
  at::Tensor pinned = at::empty(t.sizes(), t.options().pinned_memory(true));
  pinned.copy_(t);
  return pinned.to(device, /*non_blocking=*/true);
}

MicroBatchTensors make_gpt_batch(const SampleSource& src, uint64_t first, int64_t count, int64_t seq_length,
                                 std::optional<int32_t> eod_mask, const at::Device& device) {
  // BERT sources carry their own tensors (token types, padding mask, sentence order).
  if (const auto* bert = dynamic_cast<const BertSampleSource*>(&src)) return make_bert_batch(*bert, first, count, device);
  if (const auto* t5 = dynamic_cast<const T5SampleSource*>(&src)) return make_t5_batch(*t5, first, count, device);
  at::Tensor raw = at::empty({count, seq_length + 1}, at::kLong);  // [b, s + 1]
  int64_t* p = raw.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) src.sample((first + i) % src.size(), p + i * (seq_length + 1));
  at::Tensor tokens = raw.narrow(1, 0, seq_length).contiguous();  // [b, s]
  at::Tensor labels = raw.narrow(1, 1, seq_length).contiguous();  // [b, s]
  at::Tensor loss_mask = at::ones({count, seq_length}, at::kFloat);
  if (eod_mask) loss_mask.masked_fill_(tokens == *eod_mask, 0.0);
  at::Tensor position_ids = at::arange(seq_length, at::kLong).unsqueeze(0).expand({count, seq_length}).contiguous();
  return {{"tokens", to_device_async(tokens, device)},
          {"labels", to_device_async(labels, device)},
          {"loss_mask", to_device_async(loss_mask, device)},
          {"position_ids", to_device_async(position_ids, device)}};
}

MicroBatchTensors slice_for_context_parallel(const MicroBatchTensors& batch, int64_t cp, int64_t cp_rank) {
  if (cp == 1) return batch;
  MicroBatchTensors out;
  for (const auto& [name, t] : batch) {
    const int64_t b = t.size(0), s = t.size(1);
    MH_CORE_CHECK(s % (2 * cp) == 0, "context parallel: '", name, "' has sequence length ", s,
                  ", not divisible by 2 x context_parallel_size = ", 2 * cp,
                  "\nHINT: choose seq_length as a multiple of 2 x context_parallel_size");
    const at::Tensor chunks = t.reshape({b, 2 * cp, s / (2 * cp)});                    // [b, 2cp, s/2cp]
    const at::Tensor mine = at::cat({chunks.select(1, cp_rank), chunks.select(1, 2 * cp - 1 - cp_rank)}, 1);  // [b, s/cp]
    out.emplace_back(name, mine.contiguous());
  }
  return out;
}

}  // namespace megahost::core
