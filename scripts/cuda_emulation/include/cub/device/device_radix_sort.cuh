// Host stand-in for cub::DeviceRadixSort::SortPairs (see ../../cuda_runtime.h): a stable sort on the key bits
// [begin_bit, end_bit) only, like the real LSD radix sort, with the same two-call temp-storage protocol.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include <cuda_runtime.h>

namespace cub {

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, size_t& temp_storage_bytes, const KeyT* d_keys_in,
                               KeyT* d_keys_out, const ValueT* d_values_in, ValueT* d_values_out, NumItemsT num_items,
                               int begin_bit = 0, int end_bit = sizeof(KeyT) * 8, cudaStream_t = nullptr) {
    static_assert(std::is_unsigned<KeyT>::value, "the emulation sorts unsigned keys only");
    if (d_temp_storage == nullptr) {
      temp_storage_bytes = 64 + static_cast<size_t>(num_items);  // some size, as the real query returns
      return cudaSuccess;
    }
    const int n_bits = end_bit - begin_bit;
    const KeyT mask = n_bits >= static_cast<int>(sizeof(KeyT) * 8) ? ~KeyT(0) : ((KeyT(1) << n_bits) - 1);
    auto digits = [&](KeyT k) { return (k >> begin_bit) & mask; };
    std::vector<int64_t> order(static_cast<size_t>(num_items));
    std::iota(order.begin(), order.end(), int64_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return digits(d_keys_in[a]) < digits(d_keys_in[b]); });
    std::vector<KeyT> keys(order.size());
    std::vector<ValueT> values(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      keys[i] = d_keys_in[order[i]];
      values[i] = d_values_in[order[i]];
    }
    std::copy(keys.begin(), keys.end(), d_keys_out);
    std::copy(values.begin(), values.end(), d_values_out);
    return cudaSuccess;
  }
};

}  // namespace cub
