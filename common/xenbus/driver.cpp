#include "common/xenbus/driver.hpp"

#include <poll.h>

#include <spdlog/spdlog.h>

#include <chrono>

#include <optional>

namespace gears::xenbus {
namespace {

std::optional<State> read_state(xen::Store& s, const std::string& dir) {
  auto v = s.read(dir + "/state");
  if (!v) return std::nullopt;
  auto st = parse_state(*v);
  if (!st) return XenbusStateUnknown;  // garbage counts as "gone"
  return *st;
}

std::string read_or_throw(xen::Store& s, const std::string& path) {
  auto v = s.read(path);
  if (!v) throw XenError("xenbus: cannot read " + path, v.error().code);
  return *v;
}

domid_t parse_domid(const std::string& text, const std::string& path) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos)
    throw XenError("xenbus: " + path + " is not a domain id: '" + text + "'", EPROTO);
  const unsigned long v = std::stoul(text);
  if (v >= DOMID_FIRST_RESERVED) throw XenError("xenbus: " + path + " out of range", EPROTO);
  return static_cast<domid_t>(v);
}

}  // namespace

BackendDriver::BackendDriver(xen::Store& store, std::string be_path, BackendHooks& hooks)
    : store_(store), hooks_(hooks), be_path_(std::move(be_path)), token_("be:" + be_path_) {
  fe_path_ = read_or_throw(store_, be_path_ + "/frontend");
  fe_dom_ = parse_domid(read_or_throw(store_, be_path_ + "/frontend-id"), be_path_ + "/frontend-id");
}

Status BackendDriver::publish(State s) { return store_.write(be_path_ + "/state", std::to_string(static_cast<int>(s))); }

Status BackendDriver::start() {
  (void)fsm_.start();
  auto st = store_.transact([&](xen::Transaction& t) -> Status {
    if (auto a = hooks_.advertise(t, be_path_); !a) return a;
    return t.write(be_path_ + "/state", std::to_string(static_cast<int>(XenbusStateInitWait)));
  });
  if (!st) return st;
  fe_watch_ = store_.watch(fe_path_ + "/state", token_);
  be_watch_ = store_.watch(be_path_, token_);
  return {};
}

Status BackendDriver::on_watch(const xen::WatchEvent& ev) {
  if (ev.token != token_ || removed_) return {};
  if (ev.path == be_path_ || ev.path.rfind(be_path_ + "/", 0) == 0) {
    if (!store_.exists(be_path_)) {  // toolstack removed the device
      hooks_.disconnect();
      fsm_.disconnected();
      removed_ = true;
    }
    return {};
  }
  const auto fe = read_state(store_, fe_path_);
  const State before = fsm_.state();
  const BackendStep st = fsm_.on_frontend(fe);
  // The machine follows a frontend Closing/Closed with None when our rings are already down (after a
  // fault or an earlier Disconnect); the state it moved to must still be published, or the frontend and the
  // toolstack (which waits for backend Closed on detach) never see it.
  if (st == BackendStep::None && fsm_.state() != before) return publish(fsm_.state());
  return step(st);
}

Status BackendDriver::step(BackendStep st) {
  switch (st) {
    case BackendStep::None:
      return {};
    case BackendStep::Connect: {
      auto c = hooks_.connect(store_, fe_path_, fe_dom_);
      if (!c) {
        fault(c.error().what);
        return c;
      }
      fsm_.connected();
      ++connects_;
      return publish(XenbusStateConnected);
    }
    case BackendStep::Disconnect:
      hooks_.disconnect();
      fsm_.disconnected();
      return publish(fsm_.state());
    case BackendStep::Reset: {
      hooks_.disconnect();
      fsm_.disconnected();
      (void)store_.rm(be_path_ + "/error");
      auto r = store_.transact([&](xen::Transaction& t) -> Status {
        if (auto a = hooks_.advertise(t, be_path_); !a) return a;
        return t.write(be_path_ + "/state", std::to_string(static_cast<int>(XenbusStateInitWait)));
      });
      return r;
    }
    case BackendStep::Remove:
      hooks_.disconnect();
      fsm_.disconnected();
      removed_ = true;
      return {};
  }
  return {};
}

void BackendDriver::fault(std::string_view why) {
  hooks_.disconnect();
  fsm_.fault();
  (void)store_.write(be_path_ + "/error", std::string(why));
  (void)publish(XenbusStateClosing);
}

FrontendDriver::FrontendDriver(xen::Store& store, std::string fe_path, FrontendHooks& hooks)
    : store_(store), hooks_(hooks), fe_path_(std::move(fe_path)), token_("fe:" + fe_path_) {
  be_path_ = read_or_throw(store_, fe_path_ + "/backend");
  be_dom_ = parse_domid(read_or_throw(store_, fe_path_ + "/backend-id"), fe_path_ + "/backend-id");
}

Status FrontendDriver::publish(State s) { return store_.write(fe_path_ + "/state", std::to_string(static_cast<int>(s))); }

Status FrontendDriver::start() {
  if (auto p = publish(fsm_.start()); !p) return p;
  be_watch_ = store_.watch(be_path_ + "/state", token_);
  return {};
}

Status FrontendDriver::on_watch(const xen::WatchEvent& ev) {
  if (ev.token != token_) return {};
  const State before = fsm_.state();
  const FrontendStep st = fsm_.on_backend(read_state(store_, be_path_));
  // After our own fault (Closing, rings down) the backend's Closing/Closed moves us to Closed with None:
  // publish it so the backend can finish its close. (Not from Initialising: a backend still Closed from a
  // previous session must see our Initialising to reset.)
  if (st == FrontendStep::None && before == XenbusStateClosing && fsm_.state() == XenbusStateClosed)
    return publish(fsm_.state());
  return step(st);
}

Status FrontendDriver::step(FrontendStep st) {
  switch (st) {
    case FrontendStep::None:
      return {};
    case FrontendStep::Setup: {
      if (auto p = publish(XenbusStateInitialising); !p) return p;
      auto r = store_.transact([&](xen::Transaction& t) -> Status {
        if (auto s = hooks_.setup(store_, t, fe_path_, be_path_, be_dom_); !s) return s;
        return t.write(fe_path_ + "/state", std::to_string(static_cast<int>(XenbusStateInitialised)));
      });
      if (!r) {
        hooks_.disconnect();
        fsm_.fault();
        (void)publish(XenbusStateClosing);
        return r;
      }
      fsm_.initialised();
      return {};
    }
    case FrontendStep::Connected: {
      auto c = hooks_.connected(store_, be_path_);
      if (!c) {
        hooks_.disconnect();
        fsm_.fault();
        (void)publish(XenbusStateClosing);
        return c;
      }
      return publish(XenbusStateConnected);
    }
    case FrontendStep::Disconnect:
      hooks_.disconnect();
      fsm_.disconnected();
      return publish(fsm_.state());
  }
  return {};
}

Status FrontendDriver::pump(int timeout_ms) {
  pollfd p{store_.fd(), POLLIN, 0};
  (void)::poll(&p, 1, timeout_ms);
  for (;;) {
    auto ev = store_.read_watch();
    if (!ev) return {};
    if (auto s = on_watch(*ev); !s) return s;
  }
}

Status FrontendDriver::connect(int timeout_ms) {
  if (auto s = start(); !s) return s;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!connected()) {
    if (std::chrono::steady_clock::now() > deadline)
      return Error{ETIMEDOUT, "backend did not connect in time"};
    if (auto s = pump(200); !s) return s;
  }
  return {};
}

void FrontendDriver::close() {
  hooks_.disconnect();
  fsm_.disconnected();
  (void)publish(XenbusStateClosed);
}

}  // namespace gears::xenbus
