// The lifetime rule of zero-bounce I/O: a persistently mapped grant stays mapped while a target operation that reads
// or writes its page is in flight. The device pins once per such operation (at submit) and unpins at its completion;
// a cache retired while pins are held (disconnect whose drain timed out) keeps its pages mapped until the last pin
// goes. The persistent-grant cache never evicts, so retiring a whole cache is the only unmap there is.
// Owned by the device's worker thread, like everything else; no locks.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "common/xen/grant.hpp"

namespace gears::blk {

class GrantPins {
 public:
  void pin() { ++pins_; }
  void unpin() {
    if (pins_ > 0 && --pins_ == 0) retired_.clear();  // the last I/O into retired pages is done: unmap them
  }
  // The cache's connection is gone: unmapped now if nothing is in flight, else when the last pin goes.
  void retire(std::unique_ptr<xen::PersistentGrantCache> c) {
    if (c && pins_ > 0) retired_.push_back(std::move(c));
  }
  // The target is gone (its destructor waited for the kernel): nothing can be in flight any more.
  void reset() {
    pins_ = 0;
    retired_.clear();
  }
  [[nodiscard]] std::size_t pins() const { return pins_; }
  [[nodiscard]] std::size_t retired() const { return retired_.size(); }

 private:
  std::size_t pins_ = 0;
  std::vector<std::unique_ptr<xen::PersistentGrantCache>> retired_;
};

}  // namespace gears::blk
