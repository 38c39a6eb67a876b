// xenstore: Store (one xs_open connection), Watch, Transaction.
//
// Ownership: Store owns the connection. Watch and Transaction keep the raw connection pointer, so
// they survive moves of their Store but must be destroyed before it. A Store is not thread-safe:
// use it from one thread (its owner), e.g. one Store per event loop.
// Errors: constructors and watch()/transaction() throw gears::XenError; reads/writes return Result/Status.
#pragma once

#include "common/util/error.hpp"
#include "common/util/noncopyable.hpp"
#include "common/util/result.hpp"
#include "common/xen/libxen.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gears::xen {

// Access bits of a xenstore permission entry (XS_PERM_*).
enum class Access : unsigned {
  None = XS_PERM_NONE,
  Read = XS_PERM_READ,
  Write = XS_PERM_WRITE,
  ReadWrite = XS_PERM_READ | XS_PERM_WRITE,
};

// A node's permissions: the owner (full access), the access of every other domain, and exceptions.
// Written by `xenstore-chmod` as "n<owner>" + "r<dom>"..., e.g. {owner=0, others=None, acl={{5, Read}}}.
struct Perms {
  domid_t owner = 0;
  Access others = Access::None;
  std::vector<std::pair<domid_t, Access>> acl;
  friend bool operator==(const Perms&, const Perms&) = default;
};

struct WatchEvent {
  std::string path;   // the node that changed (absolute), or the watched path on registration
  std::string token;  // the token given to Store::watch
};

// Operations shared by Store (outside any transaction) and Transaction (inside one).
class StoreOps {
 public:
  [[nodiscard]] Result<std::string> read(std::string_view path) const;
  [[nodiscard]] Status write(std::string_view path, std::string_view value) const;
  [[nodiscard]] Status mkdir(std::string_view path) const;
  // Recursive. Succeeds if the node is already gone but its parent exists.
  [[nodiscard]] Status rm(std::string_view path) const;
  // Names (not paths) of the direct children.
  [[nodiscard]] Result<std::vector<std::string>> directory(std::string_view path) const;
  [[nodiscard]] Result<Perms> get_perms(std::string_view path) const;
  // Only the owner (or dom0) may change permissions.
  [[nodiscard]] Status set_perms(std::string_view path, const Perms& perms) const;
  // read() parsed as an unsigned integer (EINVAL if not a number).
  [[nodiscard]] Result<std::uint64_t> read_uint(std::string_view path) const;
  // false if the node does not exist (or is unreadable).
  [[nodiscard]] bool exists(std::string_view path) const;

 protected:
  StoreOps(xs_handle* h, xs_transaction_t t) : h_(h), t_(t) {}
  xs_handle* h_;
  xs_transaction_t t_;
};

class Watch;
class Transaction;

class Store : public StoreOps, NonCopyable {
 public:
  Store();  // connects as the current domain; throws XenError
  ~Store();
  Store(Store&& o) noexcept;
  Store& operator=(Store&& o) noexcept;

  // Readable when watch events are queued (use with epoll/poll, then drain with read_watch()).
  [[nodiscard]] int fd() const;
  // Next queued watch event without blocking; error EAGAIN when none is queued.
  [[nodiscard]] Result<WatchEvent> read_watch();
  // Registers a watch on `path` and everything below it. Xenstore fires it once at registration.
  [[nodiscard]] Watch watch(std::string path, std::string token);
  [[nodiscard]] Transaction transaction();
  // Runs `body` in a transaction and commits it, retrying the whole body on EAGAIN up to `attempts`
  // times. If `body` fails, the transaction is aborted and its error is returned.
  [[nodiscard]] Status transact(const std::function<Status(Transaction&)>& body, unsigned attempts = 8);
  // "/local/domain/<domid>".
  [[nodiscard]] static std::string domain_path(domid_t domid);

  [[nodiscard]] xs_handle* native() const { return h_; }
};

// RAII xs_watch/xs_unwatch. Queued events of this watch are dropped on unwatch (XS_UNWATCH_FILTER).
class Watch : NonCopyable {
 public:
  Watch() : h_(nullptr) {}
  ~Watch();
  Watch(Watch&& o) noexcept;
  Watch& operator=(Watch&& o) noexcept;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const std::string& token() const { return token_; }
  [[nodiscard]] bool active() const { return h_ != nullptr; }

 private:
  friend class Store;
  Watch(xs_handle* h, std::string path, std::string token);
  void release();
  xs_handle* h_;
  std::string path_;
  std::string token_;
};

// RAII transaction: reads and writes through it are isolated until commit(). Aborted in the
// destructor unless committed. At most ~10 may be open per guest domain (xenstored quota).
class Transaction : public StoreOps, NonCopyable {
 public:
  ~Transaction();
  Transaction(Transaction&& o) noexcept;
  Transaction& operator=(Transaction&& o) noexcept;
  // Ends the transaction. Error EAGAIN: something it read changed meanwhile; start a new one.
  [[nodiscard]] Status commit();
  void abort();
  [[nodiscard]] bool open() const { return t_ != XBT_NULL; }
  [[nodiscard]] xs_transaction_t id() const { return t_; }

 private:
  friend class Store;
  Transaction(xs_handle* h, xs_transaction_t t) : StoreOps(h, t) {}
};

}  // namespace gears::xen
