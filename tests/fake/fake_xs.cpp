// Fake xenstore: a node tree with owner/default/ACL permissions, watches, transactions.
// Semantics follow C xenstored: new nodes inherit the parent's permissions (an unprivileged creator
// becomes the owner), dom0 bypasses checks, setting permissions requires ownership, rm is recursive
// and succeeds on a missing node whose parent exists, a transaction commit fails with EAGAIN if any
// node it accessed changed since it started. Not modelled: quotas, relative event paths (events
// always carry absolute paths), per-watcher read-permission filtering of events.
#include "tests/fake/state.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

struct xs_handle {
  gears::fake::detail::XsHandle impl;
};

namespace gears::fake::detail {
namespace {

// Canonical absolute path, or "" if invalid. Relative paths are under the domain's home.
std::string canon(domid_t dom, const char* p) {
  if (p == nullptr || *p == '\0') return {};
  std::string s(p);
  if (s[0] == '@') return s;
  if (s[0] != '/') s = "/local/domain/" + std::to_string(dom) + "/" + s;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  if (s.find("//") != std::string::npos) return {};
  return s;
}

std::string parent_of(const std::string& p) {
  auto pos = p.rfind('/');
  return pos == 0 ? "/" : p.substr(0, pos);
}

bool is_under(const std::string& p, const std::string& dir) {  // p == dir or p inside dir
  if (dir == "/") return true;
  return p == dir || (p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 && p[dir.size()] == '/');
}

bool can(domid_t dom, const Node& n, unsigned want) {
  if (dom == 0 || n.perms.empty()) return true;
  if (n.perms[0].id == dom) return true;
  for (std::size_t i = 1; i < n.perms.size(); ++i)
    if (n.perms[i].id == dom) return (n.perms[i].perms & want) == want;
  return (n.perms[0].perms & want) == want;
}

void enqueue(XsHandle& h, WatchEvent ev) {
  h.queue.push_back(std::move(ev));
  h.bell.set();
}

// Fires watches for a change at `path`; `removed` also fires watches below it (with their own path).
void fire(World& w, const std::string& path, bool removed) {
  for (auto* h : w.xs_handles)
    for (const auto& wt : h->watches) {
      if (is_under(path, wt.path))
        enqueue(*h, {path, wt.token});
      else if (removed && is_under(wt.path, path))
        enqueue(*h, {wt.path, wt.token});
    }
}

// Context of one store operation: either the live tree or a transaction's copy.
struct Ctx {
  World& w;
  domid_t dom;
  Txn* txn;
  Tree& tree() { return txn != nullptr ? txn->tree : w.tree; }
  void touch_seen(const std::string& p) {
    if (txn == nullptr || txn->seen.count(p) != 0) return;
    auto it = txn->start_gens.find(p);
    txn->seen[p] = it == txn->start_gens.end() ? 0 : it->second;
  }
  void changed(const std::string& p, bool removed) {
    if (txn != nullptr) return;  // visible (and fired) only at commit
    w.gens[p] = ++w.gen_counter;
    fire(w, p, removed);
  }
};

int consume_write_failure(World& w) {
  if (w.fail_writes > 0) {
    --w.fail_writes;
    return w.fail_errno;
  }
  return 0;
}

int do_read(Ctx& c, const std::string& p, std::string* out) {
  c.touch_seen(p);
  auto it = c.tree().find(p);
  if (it == c.tree().end()) return ENOENT;
  if (!can(c.dom, it->second, XS_PERM_READ)) return EACCES;
  *out = it->second.value;
  return 0;
}

// Creates `p` and missing ancestors (perm-checked against the deepest existing ancestor).
int create(Ctx& c, const std::string& p, const std::string& value) {
  std::vector<std::string> missing;
  std::string cur = p;
  while (c.tree().count(cur) == 0) {
    missing.push_back(cur);
    cur = parent_of(cur);
  }
  c.touch_seen(cur);
  const Node& anc = c.tree().at(cur);
  if (!can(c.dom, anc, XS_PERM_WRITE)) return EACCES;
  std::vector<xs_permissions> perms = anc.perms;
  if (c.dom != 0) perms[0].id = c.dom;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    c.touch_seen(*it);
    Node n;
    n.perms = perms;
    if (*it == p) n.value = value;
    c.tree().emplace(*it, std::move(n));
    c.changed(parent_of(*it), false);  // parent's child list changed (generation only)
    c.changed(*it, false);
  }
  return 0;
}

int do_write(Ctx& c, const std::string& p, const std::string& value) {
  c.touch_seen(p);
  auto it = c.tree().find(p);
  if (it == c.tree().end()) return create(c, p, value);
  if (!can(c.dom, it->second, XS_PERM_WRITE)) return EACCES;
  it->second.value = value;
  c.changed(p, false);
  return 0;
}

int do_mkdir(Ctx& c, const std::string& p) {
  c.touch_seen(p);
  if (c.tree().count(p) != 0) return 0;
  return create(c, p, "");
}

int do_rm(Ctx& c, const std::string& p) {
  if (p == "/") return EINVAL;
  c.touch_seen(p);
  auto it = c.tree().find(p);
  if (it == c.tree().end()) {
    c.touch_seen(parent_of(p));
    return c.tree().count(parent_of(p)) != 0 ? 0 : ENOENT;
  }
  if (!can(c.dom, it->second, XS_PERM_WRITE)) return EACCES;
  auto& t = c.tree();
  for (auto i = t.lower_bound(p); i != t.end() && is_under(i->first, p);) {
    c.touch_seen(i->first);
    if (c.txn == nullptr) c.w.gens[i->first] = ++c.w.gen_counter;
    i = t.erase(i);
  }
  c.touch_seen(parent_of(p));
  if (c.txn == nullptr) c.w.gens[parent_of(p)] = ++c.w.gen_counter;
  c.changed(p, true);
  return 0;
}

int do_directory(Ctx& c, const std::string& p, std::vector<std::string>* out) {
  c.touch_seen(p);
  auto& t = c.tree();
  auto it = t.find(p);
  if (it == t.end()) return ENOENT;
  if (!can(c.dom, it->second, XS_PERM_READ)) return EACCES;
  const std::string prefix = p == "/" ? "/" : p + "/";
  for (auto i = t.upper_bound(p); i != t.end() && i->first.compare(0, prefix.size(), prefix) == 0; ++i) {
    std::string rest = i->first.substr(prefix.size());
    if (!rest.empty() && rest.find('/') == std::string::npos) out->push_back(rest);
  }
  return 0;
}

int do_get_perms(Ctx& c, const std::string& p, std::vector<xs_permissions>* out) {
  c.touch_seen(p);
  auto it = c.tree().find(p);
  if (it == c.tree().end()) return ENOENT;
  if (!can(c.dom, it->second, XS_PERM_READ)) return EACCES;
  *out = it->second.perms;
  return 0;
}

int do_set_perms(Ctx& c, const std::string& p, const std::vector<xs_permissions>& perms) {
  if (perms.empty()) return EINVAL;
  c.touch_seen(p);
  auto it = c.tree().find(p);
  if (it == c.tree().end()) return ENOENT;
  if (c.dom != 0 && it->second.perms[0].id != c.dom) return EACCES;
  it->second.perms = perms;
  c.changed(p, false);
  return 0;
}

// Resolves (handle, transaction) into a context; returns 0 or an errno.
int context(World& w, xs_handle* h, xs_transaction_t t, Txn** txn) {
  if (h == nullptr || w.xs_handles.count(&h->impl) == 0) return EBADF;
  *txn = nullptr;
  if (t == XBT_NULL) return 0;
  auto it = w.txns.find(t);
  if (it == w.txns.end() || it->second.owner != &h->impl) return ENOENT;
  *txn = &it->second;
  return 0;
}

template <class T>
T fail(int err, T v) {
  errno = err;
  return v;
}

// One malloc block: an array of n char* followed by the strings.
char** pack(const std::vector<std::string>& strs) {
  std::size_t bytes = sizeof(char*) * (strs.size() + 1);
  for (const auto& s : strs) bytes += s.size() + 1;
  auto* block = static_cast<char**>(std::malloc(bytes));
  if (block == nullptr) return nullptr;
  char* text = reinterpret_cast<char*>(block + strs.size() + 1);
  for (std::size_t i = 0; i < strs.size(); ++i) {
    block[i] = text;
    std::memcpy(text, strs[i].c_str(), strs[i].size() + 1);
    text += strs[i].size() + 1;
  }
  block[strs.size()] = nullptr;
  return block;
}

// Mutating calls share the failure injection; `op` runs under the lock.
template <class Fn>
bool mutate(xs_handle* h, xs_transaction_t t, const char* path, Txn::Op record, Fn&& op) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    Txn* txn = nullptr;
    err = context(w, h, t, &txn);
    std::string p;
    if (err == 0) {
      p = canon(h->impl.dom, path);
      if (p.empty() || p[0] == '@') err = EINVAL;
    }
    if (err == 0) err = consume_write_failure(w);
    if (err == 0) {
      Ctx c{w, h->impl.dom, txn};
      err = op(c, p);
      if (err == 0 && txn != nullptr) {
        record.path = p;
        txn->ops.push_back(std::move(record));
      }
    }
  }
  return err == 0 ? true : fail(err, false);
}

}  // namespace
}  // namespace gears::fake::detail

using namespace gears::fake::detail;  // NOLINT(google-build-using-namespace)

extern "C" {

struct xs_handle* xs_open(unsigned long /*flags*/) {
  auto* h = new xs_handle{};
  h->impl.dom = gears::fake::current_domain();
  auto& w = world();
  std::lock_guard lk(w.mu);
  w.xs_handles.insert(&h->impl);
  return h;
}

void xs_close(struct xs_handle* xsh) {
  if (xsh == nullptr) return;
  auto& w = world();
  {
    std::lock_guard lk(w.mu);
    w.xs_handles.erase(&xsh->impl);
    // transactions are per-connection: they die with it
    std::erase_if(w.txns, [&](const auto& kv) { return kv.second.owner == &xsh->impl; });
  }
  delete xsh;
}

int xs_fileno(struct xs_handle* h) { return h->impl.bell.fd(); }

void* xs_read(struct xs_handle* h, xs_transaction_t t, const char* path, unsigned int* len) {
  auto& w = world();
  int err = 0;
  std::string val;
  {
    std::lock_guard lk(w.mu);
    Txn* txn = nullptr;
    err = context(w, h, t, &txn);
    if (err == 0) {
      std::string p = canon(h->impl.dom, path);
      if (p.empty()) {
        err = EINVAL;
      } else {
        Ctx c{w, h->impl.dom, txn};
        err = do_read(c, p, &val);
      }
    }
  }
  if (err != 0) return fail<void*>(err, nullptr);
  auto* out = static_cast<char*>(std::malloc(val.size() + 1));
  std::memcpy(out, val.c_str(), val.size() + 1);
  if (len != nullptr) *len = static_cast<unsigned>(val.size());
  return out;
}

bool xs_write(struct xs_handle* h, xs_transaction_t t, const char* path, const void* data, unsigned int len) {
  std::string value(static_cast<const char*>(data), len);
  return mutate(h, t, path, {Txn::Op::Write, {}, value, {}}, [&](Ctx& c, const std::string& p) { return do_write(c, p, value); });
}

bool xs_mkdir(struct xs_handle* h, xs_transaction_t t, const char* path) {
  return mutate(h, t, path, {Txn::Op::Mkdir, {}, {}, {}}, [&](Ctx& c, const std::string& p) { return do_mkdir(c, p); });
}

bool xs_rm(struct xs_handle* h, xs_transaction_t t, const char* path) {
  return mutate(h, t, path, {Txn::Op::Rm, {}, {}, {}}, [&](Ctx& c, const std::string& p) { return do_rm(c, p); });
}

char** xs_directory(struct xs_handle* h, xs_transaction_t t, const char* path, unsigned int* num) {
  auto& w = world();
  int err = 0;
  std::vector<std::string> names;
  {
    std::lock_guard lk(w.mu);
    Txn* txn = nullptr;
    err = context(w, h, t, &txn);
    if (err == 0) {
      std::string p = canon(h->impl.dom, path);
      if (p.empty()) {
        err = EINVAL;
      } else {
        Ctx c{w, h->impl.dom, txn};
        err = do_directory(c, p, &names);
      }
    }
  }
  if (err != 0) return fail<char**>(err, nullptr);
  *num = static_cast<unsigned>(names.size());
  return pack(names);
}

struct xs_permissions* xs_get_permissions(struct xs_handle* h, xs_transaction_t t, const char* path,
                                          unsigned int* num) {
  auto& w = world();
  int err = 0;
  std::vector<xs_permissions> perms;
  {
    std::lock_guard lk(w.mu);
    Txn* txn = nullptr;
    err = context(w, h, t, &txn);
    if (err == 0) {
      std::string p = canon(h->impl.dom, path);
      if (p.empty()) {
        err = EINVAL;
      } else {
        Ctx c{w, h->impl.dom, txn};
        err = do_get_perms(c, p, &perms);
      }
    }
  }
  if (err != 0) return fail<xs_permissions*>(err, nullptr);
  auto* out = static_cast<xs_permissions*>(std::malloc(sizeof(xs_permissions) * perms.size()));
  std::copy(perms.begin(), perms.end(), out);
  *num = static_cast<unsigned>(perms.size());
  return out;
}

bool xs_set_permissions(struct xs_handle* h, xs_transaction_t t, const char* path, struct xs_permissions* perms,
                        unsigned int num_perms) {
  std::vector<xs_permissions> v(perms, perms + num_perms);
  return mutate(h, t, path, {Txn::Op::SetPerms, {}, {}, v}, [&](Ctx& c, const std::string& p) { return do_set_perms(c, p, v); });
}

bool xs_watch(struct xs_handle* h, const char* path, const char* token) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    std::string p = canon(h->impl.dom, path);
    if (p.empty() || token == nullptr) {
      err = EINVAL;
    } else {
      for (const auto& wt : h->impl.watches)
        if (wt.path == p && wt.token == token) err = EEXIST;
      if (err == 0) {
        h->impl.watches.push_back({p, token});
        enqueue(h->impl, {p, token});  // xenstored fires every new watch once
      }
    }
  }
  return err == 0 ? true : fail(err, false);
}

bool xs_unwatch(struct xs_handle* h, const char* path, const char* token) {
  auto& w = world();
  int err = ENOENT;
  {
    std::lock_guard lk(w.mu);
    std::string p = canon(h->impl.dom, path);
    auto& ws = h->impl.watches;
    for (auto it = ws.begin(); it != ws.end(); ++it)
      if (it->path == p && it->token == token) {
        ws.erase(it);
        err = 0;
        break;
      }
    if (err == 0) {  // XS_UNWATCH_FILTER semantics: drop queued events of this watch
      auto& q = h->impl.queue;
      std::erase_if(q, [&](const WatchEvent& ev) { return ev.token == token && is_under(ev.path, p); });
      if (q.empty()) h->impl.bell.clear();
    }
  }
  return err == 0 ? true : fail(err, false);
}

char** xs_check_watch(struct xs_handle* h) {
  auto& w = world();
  WatchEvent ev;
  {
    std::lock_guard lk(w.mu);
    auto& q = h->impl.queue;
    if (q.empty()) return fail<char**>(EAGAIN, nullptr);
    ev = std::move(q.front());
    q.pop_front();
    if (q.empty()) h->impl.bell.clear();
  }
  return pack({ev.path, ev.token});
}

char** xs_read_watch(struct xs_handle* h, unsigned int* num) {
  for (;;) {
    char** ev = xs_check_watch(h);
    if (ev != nullptr) {
      if (num != nullptr) *num = 2;
      return ev;
    }
    pollfd pfd{h->impl.bell.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return nullptr;
  }
}

xs_transaction_t xs_transaction_start(struct xs_handle* h) {
  auto& w = world();
  std::lock_guard lk(w.mu);
  xs_transaction_t id = w.next_txn++;
  Txn txn;
  txn.owner = &h->impl;
  txn.dom = h->impl.dom;
  txn.tree = w.tree;
  txn.start_gens = w.gens;
  w.txns.emplace(id, std::move(txn));
  return id;
}

bool xs_transaction_end(struct xs_handle* h, xs_transaction_t t, bool abort) {
  auto& w = world();
  int err = 0;
  {
    std::lock_guard lk(w.mu);
    auto it = w.txns.find(t);
    if (it == w.txns.end() || it->second.owner != &h->impl) {
      err = ENOENT;
    } else {
      Txn txn = std::move(it->second);
      w.txns.erase(it);
      if (!abort) {
        if (w.fail_commits > 0) {
          --w.fail_commits;
          err = EAGAIN;
        }
        for (const auto& [p, g] : txn.seen) {
          auto gi = w.gens.find(p);
          if (err == 0 && (gi == w.gens.end() ? 0 : gi->second) != g) err = EAGAIN;
        }
        if (err == 0) {
          Ctx c{w, txn.dom, nullptr};
          for (const auto& op : txn.ops) {
            switch (op.kind) {
              case Txn::Op::Write: (void)do_write(c, op.path, op.value); break;
              case Txn::Op::Mkdir: (void)do_mkdir(c, op.path); break;
              case Txn::Op::Rm: (void)do_rm(c, op.path); break;
              case Txn::Op::SetPerms: (void)do_set_perms(c, op.path, op.perms); break;
            }
          }
        }
      }
    }
  }
  return err == 0 ? true : fail(err, false);
}

char* xs_get_domain_path(struct xs_handle* /*h*/, unsigned int domid) {
  std::string p = "/local/domain/" + std::to_string(domid);
  auto* out = static_cast<char*>(std::malloc(p.size() + 1));
  std::memcpy(out, p.c_str(), p.size() + 1);
  return out;
}

}  // extern "C"

namespace gears::fake {

std::optional<std::string> store_read(const std::string& path) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  auto it = w.tree.find(path);
  if (it == w.tree.end()) return std::nullopt;
  return it->second.value;
}

bool store_exists(const std::string& path) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  return w.tree.count(path) != 0;
}

std::vector<std::string> store_children(const std::string& path) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  std::vector<std::string> out;
  detail::Ctx c{w, 0, nullptr};
  (void)detail::do_directory(c, path, &out);
  return out;
}

std::string store_dump() {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  std::ostringstream os;
  for (const auto& [p, n] : w.tree) os << p << " = \"" << n.value << "\"\n";
  return os.str();
}

void store_write(const std::string& path, const std::string& value) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  detail::Ctx c{w, 0, nullptr};
  (void)detail::do_write(c, path, value);
}

void fail_next_writes(int n, int err) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  w.fail_writes = n;
  w.fail_errno = err;
}

void fail_next_commits(int n) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  w.fail_commits = n;
}

void fire_special(const std::string& special) {
  auto& w = detail::world();
  std::lock_guard lk(w.mu);
  detail::fire(w, special, false);
}

}  // namespace gears::fake
