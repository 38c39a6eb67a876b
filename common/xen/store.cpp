#include "common/xen/store.hpp"

#include <charconv>
#include <cstdlib>
#include <memory>

namespace gears::xen {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using CPtr = std::unique_ptr<T, FreeDeleter>;

}  // namespace

Result<std::string> StoreOps::read(std::string_view path) const {
  unsigned len = 0;
  CPtr<char> v(static_cast<char*>(xs_read(h_, t_, std::string(path).c_str(), &len)));
  if (!v) return errno_error("xs_read");
  return std::string(v.get(), len);
}

Status StoreOps::write(std::string_view path, std::string_view value) const {
  if (!xs_write(h_, t_, std::string(path).c_str(), value.data(), static_cast<unsigned>(value.size())))
    return errno_error("xs_write");
  return {};
}

Status StoreOps::mkdir(std::string_view path) const {
  if (!xs_mkdir(h_, t_, std::string(path).c_str())) return errno_error("xs_mkdir");
  return {};
}

Status StoreOps::rm(std::string_view path) const {
  if (!xs_rm(h_, t_, std::string(path).c_str())) return errno_error("xs_rm");
  return {};
}

Result<std::vector<std::string>> StoreOps::directory(std::string_view path) const {
  unsigned n = 0;
  CPtr<char*> names(xs_directory(h_, t_, std::string(path).c_str(), &n));
  if (!names) return errno_error("xs_directory");
  std::vector<std::string> out;
  out.reserve(n);
  for (unsigned i = 0; i < n; ++i) out.emplace_back(names.get()[i]);
  return out;
}

Result<Perms> StoreOps::get_perms(std::string_view path) const {
  unsigned n = 0;
  CPtr<xs_permissions> p(xs_get_permissions(h_, t_, std::string(path).c_str(), &n));
  if (!p) return errno_error("xs_get_permissions");
  if (n == 0) return Error{EPROTO, "xs_get_permissions: empty"};
  Perms out;
  out.owner = static_cast<domid_t>(p.get()[0].id);
  out.others = static_cast<Access>(p.get()[0].perms & (XS_PERM_READ | XS_PERM_WRITE));
  for (unsigned i = 1; i < n; ++i)
    out.acl.emplace_back(static_cast<domid_t>(p.get()[i].id),
                         static_cast<Access>(p.get()[i].perms & (XS_PERM_READ | XS_PERM_WRITE)));
  return out;
}

Status StoreOps::set_perms(std::string_view path, const Perms& perms) const {
  std::vector<xs_permissions> v;
  v.reserve(perms.acl.size() + 1);
  v.push_back({perms.owner, static_cast<unsigned>(perms.others)});
  for (const auto& [dom, access] : perms.acl) v.push_back({dom, static_cast<unsigned>(access)});
  if (!xs_set_permissions(h_, t_, std::string(path).c_str(), v.data(), static_cast<unsigned>(v.size())))
    return errno_error("xs_set_permissions");
  return {};
}

Result<std::uint64_t> StoreOps::read_uint(std::string_view path) const {
  auto s = read(path);
  if (!s) return s.error();
  std::uint64_t v = 0;
  const auto& str = s.value();
  auto [end, ec] = std::from_chars(str.data(), str.data() + str.size(), v);
  if (ec != std::errc{} || end != str.data() + str.size() || str.empty()) return Error{EINVAL, "not an integer"};
  return v;
}

bool StoreOps::exists(std::string_view path) const { return read(path).ok(); }

// ---- Store ----

Store::Store() : StoreOps(xs_open(XS_UNWATCH_FILTER), XBT_NULL) {
  if (h_ == nullptr) throw XenError("xs_open");
}

Store::~Store() {
  if (h_ != nullptr) xs_close(h_);
}

Store::Store(Store&& o) noexcept : StoreOps(std::exchange(o.h_, nullptr), XBT_NULL) {}

Store& Store::operator=(Store&& o) noexcept {
  if (this != &o) {
    if (h_ != nullptr) xs_close(h_);
    h_ = std::exchange(o.h_, nullptr);
  }
  return *this;
}

int Store::fd() const { return xs_fileno(h_); }

Result<WatchEvent> Store::read_watch() {
  CPtr<char*> ev(xs_check_watch(h_));
  if (!ev) return errno_error("xs_check_watch");
  return WatchEvent{ev.get()[XS_WATCH_PATH], ev.get()[XS_WATCH_TOKEN]};
}

Watch Store::watch(std::string path, std::string token) {
  if (!xs_watch(h_, path.c_str(), token.c_str())) throw XenError("xs_watch " + path);
  return Watch(h_, std::move(path), std::move(token));
}

Transaction Store::transaction() {
  xs_transaction_t t = xs_transaction_start(h_);
  if (t == XBT_NULL) throw XenError("xs_transaction_start");
  return Transaction(h_, t);
}

Status Store::transact(const std::function<Status(Transaction&)>& body, unsigned attempts) {
  for (unsigned i = 0; i < attempts; ++i) {
    xs_transaction_t id = xs_transaction_start(h_);
    if (id == XBT_NULL) return errno_error("xs_transaction_start");
    Transaction t(h_, id);
    Status s = body(t);
    if (!s.ok()) return s;
    if (!t.open()) return Error{EINVAL, "transact: body ended the transaction"};
    Status c = t.commit();
    if (c.ok() || c.error().code != EAGAIN) return c;
  }
  return Error{EAGAIN, "transact: too many conflicts"};
}

std::string Store::domain_path(domid_t domid) { return "/local/domain/" + std::to_string(domid); }

// ---- Watch ----

Watch::Watch(xs_handle* h, std::string path, std::string token)
    : h_(h), path_(std::move(path)), token_(std::move(token)) {}

void Watch::release() {
  if (h_ != nullptr) (void)xs_unwatch(h_, path_.c_str(), token_.c_str());
  h_ = nullptr;
}

Watch::~Watch() { release(); }

Watch::Watch(Watch&& o) noexcept
    : NonCopyable(std::move(o)), h_(std::exchange(o.h_, nullptr)), path_(std::move(o.path_)),
      token_(std::move(o.token_)) {}

Watch& Watch::operator=(Watch&& o) noexcept {
  if (this != &o) {
    release();
    h_ = std::exchange(o.h_, nullptr);
    path_ = std::move(o.path_);
    token_ = std::move(o.token_);
  }
  return *this;
}

// ---- Transaction ----

Transaction::~Transaction() { abort(); }

Transaction::Transaction(Transaction&& o) noexcept : StoreOps(o.h_, std::exchange(o.t_, XBT_NULL)) {}

Transaction& Transaction::operator=(Transaction&& o) noexcept {
  if (this != &o) {
    abort();
    h_ = o.h_;
    t_ = std::exchange(o.t_, XBT_NULL);
  }
  return *this;
}

Status Transaction::commit() {
  if (t_ == XBT_NULL) return Error{EINVAL, "transaction not open"};
  const bool ok = xs_transaction_end(h_, std::exchange(t_, XBT_NULL), false);
  if (!ok) return errno_error("xs_transaction_end");
  return {};
}

void Transaction::abort() {
  if (t_ != XBT_NULL) (void)xs_transaction_end(h_, std::exchange(t_, XBT_NULL), true);
}

}  // namespace gears::xen
