// Drivers that run the xenbus state machines (state_machine.hpp) over xenstore. One driver per device;
// the device supplies hooks. The caller owns the Store, polls Store::fd(), and hands every WatchEvent to
// on_watch(); events for other tokens are ignored, so several drivers may share one Store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/util/result.hpp"
#include "common/xen/store.hpp"
#include "common/xenbus/state_machine.hpp"

namespace gears::xenbus {

class BackendHooks {
 public:
  virtual ~BackendHooks() = default;
  // Write feature-* and max-* keys (inside the transaction that also publishes InitWait).
  [[nodiscard]] virtual Status advertise(xen::StoreOps& t, const std::string& be_path) = 0;
  // Frontend is Initialised/Connected: read its keys under fe_path, map rings, bind the event channel.
  [[nodiscard]] virtual Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) = 0;
  // Unmap and unbind everything connect() set up. Must be idempotent.
  virtual void disconnect() = 0;
};

class BackendDriver {
 public:
  // be_path: /local/domain/0/backend/<type>/<domU>/<devid>; reads `frontend` and `frontend-id` from it.
  BackendDriver(xen::Store& store, std::string be_path, BackendHooks& hooks);  // throws XenError
  BackendDriver(const BackendDriver&) = delete;
  BackendDriver& operator=(const BackendDriver&) = delete;

  // Advertise, publish InitWait, watch the frontend's state and our own directory.
  [[nodiscard]] Status start();
  // Feed every watch event of the shared Store here.
  [[nodiscard]] Status on_watch(const xen::WatchEvent& ev);
  // The frontend misbehaved: disconnect, write `error`, publish Closing. Rings stay down until the
  // frontend resets (Closed -> Initialising).
  void fault(std::string_view why);

  [[nodiscard]] State state() const { return fsm_.state(); }
  [[nodiscard]] bool removed() const { return removed_; }  // frontend or backend directory vanished
  [[nodiscard]] const std::string& be_path() const { return be_path_; }
  [[nodiscard]] const std::string& fe_path() const { return fe_path_; }
  [[nodiscard]] domid_t fe_dom() const { return fe_dom_; }
  [[nodiscard]] std::uint64_t connects() const { return connects_; }

 private:
  Status publish(State s);
  Status step(BackendStep st);

  xen::Store& store_;
  BackendHooks& hooks_;
  std::string be_path_, fe_path_;
  domid_t fe_dom_ = 0;
  std::string token_;
  xen::Watch fe_watch_, be_watch_;
  BackendMachine fsm_;
  bool removed_ = false;
  std::uint64_t connects_ = 0;
};

class FrontendHooks {
 public:
  virtual ~FrontendHooks() = default;
  // Backend is InitWait: read its features under be_path, grant rings, allocate the event channel and write
  // our keys into `t` (the transaction that also publishes Initialised).
  [[nodiscard]] virtual Status setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path,
                                     const std::string& be_path, domid_t be_dom) = 0;
  // Backend is Connected: start the data path.
  [[nodiscard]] virtual Status connected(xen::Store& s, const std::string& be_path) = 0;
  // Stop the data path and release what setup() granted. Must be idempotent.
  virtual void disconnect() = 0;
};

class FrontendDriver {
 public:
  // fe_path: device/<type>/<devid> (relative or absolute); reads `backend` and `backend-id`.
  FrontendDriver(xen::Store& store, std::string fe_path, FrontendHooks& hooks);  // throws XenError
  FrontendDriver(const FrontendDriver&) = delete;
  FrontendDriver& operator=(const FrontendDriver&) = delete;

  [[nodiscard]] Status start();
  [[nodiscard]] Status on_watch(const xen::WatchEvent& ev);
  // Waits up to timeout_ms for the store to become readable, then feeds it every pending watch event; the
  // first failing hook ends the pump with its error.
  [[nodiscard]] Status pump(int timeout_ms);
  // start(), then pump until Connected; ETIMEDOUT after timeout_ms (state() tells how far it got).
  [[nodiscard]] Status connect(int timeout_ms);
  // Orderly close from our side: disconnect and publish Closed.
  void close();

  [[nodiscard]] State state() const { return fsm_.state(); }
  [[nodiscard]] bool connected() const { return fsm_.state() == XenbusStateConnected; }
  [[nodiscard]] const std::string& be_path() const { return be_path_; }
  [[nodiscard]] domid_t be_dom() const { return be_dom_; }

 private:
  Status publish(State s);
  Status step(FrontendStep st);

  xen::Store& store_;
  FrontendHooks& hooks_;
  std::string fe_path_, be_path_;
  domid_t be_dom_ = 0;
  std::string token_;
  xen::Watch be_watch_;
  FrontendMachine fsm_;
};

}  // namespace gears::xenbus
