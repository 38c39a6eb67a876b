#include "common/xenbus/state_machine.hpp"

#include <gtest/gtest.h>

namespace gears::xenbus {
namespace {

TEST(XenbusParse, AcceptsOnlyDigitsInRange) {
  EXPECT_EQ(parse_state("4").value(), XenbusStateConnected);
  EXPECT_EQ(parse_state("0").value(), XenbusStateUnknown);
  for (auto bad : {"", "9", "-1", " 4", "4 ", "44", "x", "+4"}) {
    EXPECT_FALSE(parse_state(bad).ok()) << "'" << bad << "'";
  }
  EXPECT_EQ(state_name(XenbusStateInitWait), "InitWait");
}

TEST(BackendMachine, ConnectsWhenFrontendInitialised) {
  BackendMachine be;
  EXPECT_EQ(be.start(), XenbusStateInitWait);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialising), BackendStep::None);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.connected();
  EXPECT_EQ(be.state(), XenbusStateConnected);
  EXPECT_TRUE(be.rings_up());
  // Frontend moving on to Connected, or a repeated watch, changes nothing.
  EXPECT_EQ(be.on_frontend(XenbusStateConnected), BackendStep::None);
  EXPECT_EQ(be.on_frontend(XenbusStateConnected), BackendStep::None);
}

TEST(BackendMachine, ConnectsWhenFrontendJumpsToConnected) {
  BackendMachine be;
  (void)be.start();
  EXPECT_EQ(be.on_frontend(XenbusStateConnected), BackendStep::Connect);
}

TEST(BackendMachine, OrderlyCloseAndReconnect) {
  BackendMachine be;
  (void)be.start();
  ASSERT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.connected();
  EXPECT_EQ(be.on_frontend(XenbusStateClosing), BackendStep::Disconnect);
  EXPECT_EQ(be.state(), XenbusStateClosing);
  be.disconnected();
  EXPECT_EQ(be.on_frontend(XenbusStateClosed), BackendStep::None);
  EXPECT_EQ(be.state(), XenbusStateClosed);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialising), BackendStep::Reset);
  EXPECT_EQ(be.state(), XenbusStateInitWait);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.connected();
  EXPECT_EQ(be.state(), XenbusStateConnected);
}

TEST(BackendMachine, FrontendClosedWithoutClosingStillDisconnects) {
  BackendMachine be;
  (void)be.start();
  ASSERT_EQ(be.on_frontend(XenbusStateConnected), BackendStep::Connect);
  be.connected();
  EXPECT_EQ(be.on_frontend(XenbusStateClosed), BackendStep::Disconnect);
  EXPECT_EQ(be.state(), XenbusStateClosed);
}

TEST(BackendMachine, FrontendRestartWithoutSeenCloseResets) {
  BackendMachine be;
  (void)be.start();
  ASSERT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.connected();
  // The frontend closed and re-initialised between two of our reads: we only see Initialising.
  EXPECT_EQ(be.on_frontend(XenbusStateInitialising), BackendStep::Reset);
  EXPECT_EQ(be.state(), XenbusStateInitWait);
  EXPECT_FALSE(be.rings_up());
  EXPECT_EQ(be.on_frontend(XenbusStateInitialising), BackendStep::None);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
}

TEST(BackendMachine, VanishedFrontendIsRemoved) {
  BackendMachine be;
  (void)be.start();
  ASSERT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.connected();
  EXPECT_EQ(be.on_frontend(std::nullopt), BackendStep::Remove);
  EXPECT_EQ(be.state(), XenbusStateClosed);
  BackendMachine idle;
  (void)idle.start();
  EXPECT_EQ(idle.on_frontend(XenbusStateUnknown), BackendStep::Remove);
}

TEST(BackendMachine, FaultClosesAndStaysClosedUntilFrontendResets) {
  BackendMachine be;
  (void)be.start();
  ASSERT_EQ(be.on_frontend(XenbusStateInitialised), BackendStep::Connect);
  be.fault();
  EXPECT_EQ(be.state(), XenbusStateClosing);
  EXPECT_FALSE(be.rings_up());
  // A hostile frontend insisting on Connected does not get its rings mapped again.
  EXPECT_EQ(be.on_frontend(XenbusStateConnected), BackendStep::None);
  EXPECT_EQ(be.on_frontend(XenbusStateClosing), BackendStep::None);
  EXPECT_EQ(be.on_frontend(XenbusStateClosed), BackendStep::None);
  EXPECT_EQ(be.state(), XenbusStateClosed);
  EXPECT_EQ(be.on_frontend(XenbusStateInitialising), BackendStep::Reset);
}

TEST(FrontendMachine, FullHandshake) {
  FrontendMachine fe;
  EXPECT_EQ(fe.start(), XenbusStateInitialising);
  EXPECT_EQ(fe.on_backend(XenbusStateInitialising), FrontendStep::None);
  EXPECT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::Setup);
  fe.initialised();
  EXPECT_EQ(fe.state(), XenbusStateInitialised);
  EXPECT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::None);
  EXPECT_EQ(fe.on_backend(XenbusStateConnected), FrontendStep::Connected);
  EXPECT_EQ(fe.state(), XenbusStateConnected);
  EXPECT_EQ(fe.on_backend(XenbusStateConnected), FrontendStep::None);
}

TEST(FrontendMachine, BackendCloseThenReset) {
  FrontendMachine fe;
  (void)fe.start();
  ASSERT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::Setup);
  fe.initialised();
  ASSERT_EQ(fe.on_backend(XenbusStateConnected), FrontendStep::Connected);
  EXPECT_EQ(fe.on_backend(XenbusStateClosing), FrontendStep::Disconnect);
  fe.disconnected();
  EXPECT_EQ(fe.state(), XenbusStateClosed);
  EXPECT_EQ(fe.on_backend(XenbusStateClosed), FrontendStep::None);
  EXPECT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::Setup);
  EXPECT_EQ(fe.state(), XenbusStateInitialising);
}

TEST(FrontendMachine, VanishedBackend) {
  FrontendMachine fe;
  (void)fe.start();
  ASSERT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::Setup);
  fe.initialised();
  EXPECT_EQ(fe.on_backend(std::nullopt), FrontendStep::Disconnect);
  fe.disconnected();
  EXPECT_EQ(fe.on_backend(std::nullopt), FrontendStep::None);
}

TEST(FrontendMachine, SetupFailureDoesNotConnect) {
  FrontendMachine fe;
  (void)fe.start();
  ASSERT_EQ(fe.on_backend(XenbusStateInitWait), FrontendStep::Setup);
  fe.fault();
  EXPECT_EQ(fe.state(), XenbusStateClosing);
  EXPECT_EQ(fe.on_backend(XenbusStateConnected), FrontendStep::None);
}

}  // namespace
}  // namespace gears::xenbus
