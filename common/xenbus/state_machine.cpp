#include "common/xenbus/state_machine.hpp"

#include <charconv>

namespace gears::xenbus {

Result<State> parse_state(std::string_view text) {
  if (text.empty() || text.size() > 1) return Error{EPROTO, "xenbus state is not a single digit"};
  int v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return Error{EPROTO, "xenbus state is not a number"};
  if (v < XenbusStateUnknown || v > XenbusStateReconfigured) return Error{EPROTO, "xenbus state out of range"};
  return static_cast<State>(v);
}

std::string_view state_name(State s) {
  switch (s) {
    case XenbusStateUnknown: return "Unknown";
    case XenbusStateInitialising: return "Initialising";
    case XenbusStateInitWait: return "InitWait";
    case XenbusStateInitialised: return "Initialised";
    case XenbusStateConnected: return "Connected";
    case XenbusStateClosing: return "Closing";
    case XenbusStateClosed: return "Closed";
    case XenbusStateReconfiguring: return "Reconfiguring";
    case XenbusStateReconfigured: return "Reconfigured";
  }
  return "Invalid";
}

State BackendMachine::start() {
  state_ = XenbusStateInitWait;
  rings_up_ = false;
  return state_;
}

BackendStep BackendMachine::on_frontend(std::optional<State> fe) {
  if (!fe || *fe == XenbusStateUnknown) {
    state_ = XenbusStateClosed;
    return BackendStep::Remove;
  }
  switch (*fe) {
    case XenbusStateInitialising:
    case XenbusStateInitWait:
      // A frontend (re)starting: after we closed, or without us having seen its close (a quick
      // Closed -> Initialising that one watch read coalesced). Either way: drop any rings, offer again.
      if (state_ == XenbusStateInitWait && !rings_up_) return BackendStep::None;
      state_ = XenbusStateInitWait;
      rings_up_ = false;  // the driver tears them down as part of Reset
      return BackendStep::Reset;
    case XenbusStateInitialised:
    case XenbusStateConnected:
      if (state_ == XenbusStateInitWait && !rings_up_) return BackendStep::Connect;
      return BackendStep::None;
    case XenbusStateClosing:
      if (state_ == XenbusStateClosing && !rings_up_) return BackendStep::None;
      state_ = XenbusStateClosing;
      return rings_up_ ? BackendStep::Disconnect : BackendStep::None;
    case XenbusStateClosed:
      if (state_ == XenbusStateClosed) return BackendStep::None;
      state_ = XenbusStateClosed;
      return rings_up_ ? BackendStep::Disconnect : BackendStep::None;
    case XenbusStateReconfiguring:
    case XenbusStateReconfigured:
    case XenbusStateUnknown:
      break;
  }
  return BackendStep::None;
}

void BackendMachine::connected() {
  state_ = XenbusStateConnected;
  rings_up_ = true;
}

void BackendMachine::fault() {
  state_ = XenbusStateClosing;
  rings_up_ = false;
}

void BackendMachine::disconnected() { rings_up_ = false; }

State FrontendMachine::start() {
  state_ = XenbusStateInitialising;
  rings_up_ = false;
  return state_;
}

FrontendStep FrontendMachine::on_backend(std::optional<State> be) {
  if (!be || *be == XenbusStateUnknown) {
    if (state_ == XenbusStateClosed && !rings_up_) return FrontendStep::None;
    state_ = XenbusStateClosed;
    return rings_up_ ? FrontendStep::Disconnect : FrontendStep::None;
  }
  switch (*be) {
    case XenbusStateInitWait:
      if (state_ == XenbusStateClosed) state_ = XenbusStateInitialising;  // backend reset: reconnect
      if (state_ == XenbusStateInitialising && !rings_up_) return FrontendStep::Setup;
      return FrontendStep::None;
    case XenbusStateConnected:
      if (state_ == XenbusStateInitialised && rings_up_) {
        state_ = XenbusStateConnected;
        return FrontendStep::Connected;
      }
      return FrontendStep::None;
    case XenbusStateClosing:
      if (state_ == XenbusStateClosed) return FrontendStep::None;
      state_ = XenbusStateClosed;  // we have nothing to flush: close at once
      return rings_up_ ? FrontendStep::Disconnect : FrontendStep::None;
    case XenbusStateClosed:
      if (state_ == XenbusStateClosed && !rings_up_) return FrontendStep::None;
      state_ = XenbusStateClosed;
      return rings_up_ ? FrontendStep::Disconnect : FrontendStep::None;
    case XenbusStateInitialising:
    case XenbusStateInitialised:
    case XenbusStateReconfiguring:
    case XenbusStateReconfigured:
    case XenbusStateUnknown:
      break;
  }
  return FrontendStep::None;
}

void FrontendMachine::initialised() {
  state_ = XenbusStateInitialised;
  rings_up_ = true;
}

void FrontendMachine::fault() {
  state_ = XenbusStateClosing;
  rings_up_ = false;
}

void FrontendMachine::disconnected() { rings_up_ = false; }

}  // namespace gears::xenbus
