// The xenbus handshake, written once for every Gears device (backends and frontends).
//
// Both machines are pure: they observe the other end's published state and return the one step the device must
// take; the driver (xenbus/device.hpp) performs the step through xenstore and the device's hooks, then reports
// the outcome. A vanished peer (its state node gone, or its domain dead) is observed as std::nullopt.
//
// Backend:                                   Frontend:
//   start          -> InitWait (advertise)     start          -> Initialising
//   fe Initialised/Connected, be InitWait      be InitWait, fe Initialising
//                  -> Connect hook             -> Setup hook (grant rings, write refs) -> Initialised
//                     ok: Connected            be Connected, fe Initialised -> Connected hook -> Connected
//                     fail: Closing (fault)    be Closing -> Disconnect hook -> Closing
//   fe Closing     -> Disconnect -> Closing    be Closed  -> Disconnect hook (if needed) -> Closed
//   fe Closed      -> Disconnect -> Closed     be InitWait again after Closed -> Initialising (reconnect)
//   fe Initialising (restart) -> Reset: rings dropped, InitWait   be vanished -> Disconnect -> Closed
//   fe vanished    -> Disconnect -> Closed, Remove
#pragma once

#include <xen/io/xenbus.h>

#include <optional>
#include <string_view>

#include "common/util/result.hpp"

namespace gears::xenbus {

using State = XenbusState;

// Strict parse of a xenstore `state` value: decimal 0..8, no sign, no spaces.
[[nodiscard]] Result<State> parse_state(std::string_view text);
[[nodiscard]] std::string_view state_name(State s);

enum class BackendStep {
  None,        // nothing to do
  Connect,     // read the frontend's ring refs and event channel, map, bind; then connected() or fault()
  Disconnect,  // unmap and unbind; state() already says where to go (Closing or Closed)
  Reset,       // frontend (re)started: drop rings if up, re-advertise, back to InitWait
  Remove,      // frontend vanished: disconnect (if needed) and remove the backend directory
};

class BackendMachine {
 public:
  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] bool rings_up() const { return rings_up_; }

  State start();
  [[nodiscard]] BackendStep on_frontend(std::optional<State> fe);
  void connected();           // Connect succeeded -> Connected
  void fault();               // Connect failed or the frontend misbehaved -> Closing, rings down
  void disconnected();        // Disconnect done -> rings down

 private:
  State state_ = XenbusStateInitialising;
  bool rings_up_ = false;
};

enum class FrontendStep {
  None,
  Setup,       // grant the rings, allocate the event channel, write refs; then initialised() or fault()
  Connected,   // backend is Connected: read its features, start the data path
  Disconnect,  // stop the data path and release rings
};

class FrontendMachine {
 public:
  [[nodiscard]] State state() const { return state_; }
  [[nodiscard]] bool rings_up() const { return rings_up_; }

  State start();
  [[nodiscard]] FrontendStep on_backend(std::optional<State> be);
  void initialised();         // Setup succeeded -> Initialised
  void fault();               // -> Closing
  void disconnected();

 private:
  State state_ = XenbusStateInitialising;
  bool rings_up_ = false;
};

}  // namespace gears::xenbus
