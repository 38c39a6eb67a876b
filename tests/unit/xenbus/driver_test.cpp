// BackendDriver and FrontendDriver run together over the fake hypervisor: the backend as dom0, the frontend
// as dom7, each with its own Store, with hooks that really share a page and an event channel. The toolstack
// (a third Store, dom0) creates the device nodes as xl would; pump() feeds both Stores' watch events to their
// drivers, alternately, until neither has anything queued.
#include "common/xenbus/driver.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/xen/evtchn.hpp"
#include "common/xen/grant.hpp"
#include "tests/fake/fake.hpp"

namespace gears::xenbus {
namespace {

constexpr domid_t kFeDom = 7;
const std::string kFePath = "/local/domain/7/device/test/0";
const std::string kBePath = "/local/domain/0/backend/test/7/0";

std::string num(State s) { return std::to_string(static_cast<int>(s)); }

// `construct` (a driver's construction) throws XenError `code`; `accepted` says what it took instead.
template <class F>
void expect_refused(F construct, int code, const std::string& accepted) {
  try {
    construct();
  } catch (const XenError& e) {
    EXPECT_EQ(e.code(), code);
    return;
  }
  FAIL() << accepted;
}

// ---- the device: one page of "ring" and one event channel ----------------------------------------------

// What each end holds: the handle its page comes from, the page (mapped or shared), and the event channel.
// Members in that order, so the page is released before its handle.
template <class Handle, class Page>
struct TestEnd {
  void release() {
    ++disconnects;
    ch = xen::EventChannel();
    page.reset();
  }
  [[nodiscard]] bool up() const { return page.valid() && ch.valid(); }

  Handle handle;
  Page page;
  xen::EventChannel ch;
  int disconnects = 0;
};

class TestBackend final : public BackendHooks, public TestEnd<xen::GrantTable, xen::GrantMapping> {
 public:
  Status advertise(xen::StoreOps& t, const std::string& be_path) override {
    ++advertises;
    return t.write(be_path + "/feature-test", "1");
  }

  Status connect(xen::Store& s, const std::string& fe_path, domid_t fe_dom) override {
    ++connect_calls;
    if (fail_connect) return Error{EPROTO, "test: connect refused"};
    auto ref = s.read_uint(fe_path + "/ring-ref");
    auto port = s.read_uint(fe_path + "/event-channel");
    if (!ref || !port) return Error{EPROTO, "test: frontend keys missing"};
    auto m = handle.map(fe_dom, static_cast<grant_ref_t>(*ref), true);
    if (!m) return m.error();
    try {
      ch = xen::EventChannel::bind_interdomain(fe_dom, static_cast<evtchn_port_t>(*port));
    } catch (const XenError&) {
      return Error{EPROTO, "test: cannot bind"};
    }
    page = std::move(m.value());
    return {};
  }

  void disconnect() override { release(); }

  bool fail_connect = false;
  int advertises = 0, connect_calls = 0;
};

// Constructed, and called, as dom7.
class TestFrontend final : public FrontendHooks, public TestEnd<xen::GrantSharer, xen::GrantShare> {
 public:
  Status setup(xen::Store& s, xen::StoreOps& t, const std::string& fe_path, const std::string& be_path,
               domid_t be_dom) override {
    ++setups;
    if (fail_setup) return Error{EIO, "test: setup failed"};
    auto feat = s.read(be_path + "/feature-test");
    if (!feat || *feat != "1") return Error{EPROTO, "test: backend lacks feature-test"};
    try {
      // Replaces what a previous attempt of this transaction body allocated.
      page = xen::GrantShare(handle, be_dom, 1);
      ch = xen::EventChannel::alloc_unbound(be_dom);
    } catch (const XenError&) {
      return Error{ENOMEM, "test: cannot grant"};
    }
    const std::string hello = "ring generation " + std::to_string(setups);
    std::memcpy(page.data(), hello.c_str(), hello.size() + 1);
    if (auto w = t.write(fe_path + "/ring-ref", std::to_string(page.refs()[0])); !w) return w;
    return t.write(fe_path + "/event-channel", std::to_string(ch.port()));
  }

  Status connected(xen::Store& /*s*/, const std::string& /*be_path*/) override {
    ++connected_calls;
    if (fail_connected) return Error{EIO, "test: connected failed"};
    return {};
  }

  void disconnect() override { release(); }

  bool fail_setup = false, fail_connected = false;
  int setups = 0, connected_calls = 0;
};

// ---- fixture ------------------------------------------------------------------------------------------

class XenbusDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::reset();
    toolstack.emplace();
    be_store.emplace();
    be_hooks = std::make_unique<TestBackend>();
    fake::AsDomain d(kFeDom);
    fe_store.emplace();
    fe_hooks = std::make_unique<TestFrontend>();
  }

  void TearDown() override {
    // Drivers (they hold Watches) before their Stores; hooks own their handles.
    be.reset();
    fe.reset();
    be_hooks.reset();
    fe_hooks.reset();
    be_store.reset();
    fe_store.reset();
    toolstack.reset();
    auto c = fake::counters();
    EXPECT_EQ(c.xs_handles, 0U);
    EXPECT_EQ(c.xs_watches, 0U);
    EXPECT_EQ(c.xs_transactions, 0U);
    EXPECT_EQ(c.gnttab_handles, 0U);
    EXPECT_EQ(c.gntshr_handles, 0U);
    EXPECT_EQ(c.grants, 0U);
    EXPECT_EQ(c.mapped_pages, 0U);
    EXPECT_EQ(c.evtchn_handles, 0U);
    EXPECT_EQ(c.ports, 0U);
  }

  // What xl does for a device: frontend and backend directories, each owned by its end, readable by the other.
  void create_device(const std::string& frontend_id = "7", const std::string& backend_id = "0") {
    auto& ts = *toolstack;
    ASSERT_TRUE(ts.write(kFePath + "/backend", kBePath).ok());
    ASSERT_TRUE(ts.write(kFePath + "/backend-id", backend_id).ok());
    ASSERT_TRUE(ts.write(kFePath + "/state", num(XenbusStateInitialising)).ok());
    const xen::Perms fe_perms{kFeDom, xen::Access::None, {{0, xen::Access::Read}}};
    for (const char* leaf : {"", "/backend", "/backend-id", "/state"})
      ASSERT_TRUE(ts.set_perms(kFePath + leaf, fe_perms).ok());
    ASSERT_TRUE(ts.write(kBePath + "/frontend", kFePath).ok());
    ASSERT_TRUE(ts.write(kBePath + "/frontend-id", frontend_id).ok());
    const xen::Perms be_perms{0, xen::Access::None, {{kFeDom, xen::Access::Read}}};
    for (const char* leaf : {"", "/frontend", "/frontend-id"})
      ASSERT_TRUE(ts.set_perms(kBePath + leaf, be_perms).ok());
  }

  // Both drivers on a new device, neither started.
  void make_both() {
    create_device();
    make_backend();
    make_frontend();
  }
  // ...and both started, nothing pumped yet.
  void start_both() {
    make_both();
    start_backend();
    start_frontend();
  }

  void make_backend() { be.emplace(*be_store, kBePath, *be_hooks); }
  void make_frontend() {
    fake::AsDomain d(kFeDom);
    fe.emplace(*fe_store, "device/test/0", *fe_hooks);  // relative, as a guest names it
  }
  void start_backend() { ASSERT_TRUE(be->start().ok()); }
  void start_frontend() {
    fake::AsDomain d(kFeDom);
    ASSERT_TRUE(fe->start().ok());
  }

  // Drains one Store into its driver; returns the number of events handled.
  template <class Driver>
  int drain(xen::Store& s, std::optional<Driver>& drv, std::vector<Error>& errors, std::vector<std::string>& log,
            const std::string& state_path) {
    int n = 0;
    for (;;) {
      auto ev = s.read_watch();
      if (!ev) {
        EXPECT_EQ(ev.error().code, EAGAIN);
        return n;
      }
      ++n;
      if (!drv) continue;
      if (auto st = drv->on_watch(ev.value()); !st) errors.push_back(st.error());
      auto v = fake::store_read(state_path);
      std::string now = v ? *v : "-";
      if (log.empty() || log.back() != now) log.push_back(now);
    }
  }

  // Alternates between the two ends until both are quiescent.
  void pump() {
    for (int round = 0; round < 64; ++round) {
      int n = fe_first ? 0 : drain(*be_store, be, be_errors, be_log, kBePath + "/state");
      {
        fake::AsDomain d(kFeDom);
        n += drain(*fe_store, fe, fe_errors, fe_log, kFePath + "/state");
      }
      if (fe_first) n += drain(*be_store, be, be_errors, be_log, kBePath + "/state");
      n += drain(*toolstack, no_driver_, ts_errors_, ts_log_, "/");
      if (n == 0) return;
    }
    ADD_FAILURE() << "watch events still flowing after 64 rounds\n" << fake::store_dump();
  }

  // Feeds the frontend driver its queued watch events, as dom7, leaving the backend's queued.
  void drain_frontend() {
    fake::AsDomain d(kFeDom);
    (void)drain(*fe_store, fe, fe_errors, fe_log, kFePath + "/state");
  }

  void connect_both() {
    start_both();
    pump();
    ASSERT_EQ(be->state(), XenbusStateConnected);
    ASSERT_EQ(fe->state(), XenbusStateConnected);
  }

  // The guest's driver comes back (after fe.reset()): a new FrontendDriver starts and both ends run.
  void restart_frontend() {
    make_frontend();
    start_frontend();
    pump();
  }

  void close_frontend() {
    fake::AsDomain d(kFeDom);
    fe->close();
  }

  [[nodiscard]] std::string be_state() const { return fake::store_read(kBePath + "/state").value_or("-"); }
  [[nodiscard]] std::string fe_state() const { return fake::store_read(kFePath + "/state").value_or("-"); }

  // The page is the same memory at both ends, and an event crosses each way.
  void expect_data_path(const std::string& hello) {
    ASSERT_TRUE(be_hooks->up());
    ASSERT_TRUE(fe_hooks->up());
    EXPECT_STREQ(reinterpret_cast<const char*>(be_hooks->page.data()), hello.c_str());
    std::memcpy(be_hooks->page.data() + 100, "pong", 5);
    EXPECT_STREQ(reinterpret_cast<const char*>(fe_hooks->page.data() + 100), "pong");

    ASSERT_TRUE(fe_hooks->ch.notify().ok());
    auto got = be_hooks->ch.consume();
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(got.value()) << "frontend -> backend event";
    ASSERT_TRUE(be_hooks->ch.notify().ok());
    got = fe_hooks->ch.consume();
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE(got.value()) << "backend -> frontend event";
  }

  // Both drivers Connected, and the data path works on the ring page the frontend set up last.
  void expect_connected(const std::string& hello) {
    EXPECT_EQ(be->state(), XenbusStateConnected);
    EXPECT_EQ(fe->state(), XenbusStateConnected);
    expect_data_path(hello);
  }

  // Writes the frontend's state node as the (possibly hostile) guest itself would.
  void guest_writes_state(const std::string& v) {
    fake::AsDomain d(kFeDom);
    ASSERT_TRUE(fe_store->write(kFePath + "/state", v).ok());
  }

  std::optional<xen::Store> toolstack, be_store, fe_store;
  std::unique_ptr<TestBackend> be_hooks;
  std::unique_ptr<TestFrontend> fe_hooks;
  std::optional<BackendDriver> be;
  std::optional<FrontendDriver> fe;
  std::vector<Error> be_errors, fe_errors;
  std::vector<std::string> be_log, fe_log;  // published state after each handled event (changes only)
  bool fe_first = false;                    // pump() order

 private:
  std::optional<BackendDriver> no_driver_;
  std::vector<Error> ts_errors_;
  std::vector<std::string> ts_log_;
};

// ---- handshake ----------------------------------------------------------------------------------------

TEST_F(XenbusDriverTest, FullHandshakeConnectsBothEndsAndSharesTheRing) {
  create_device();
  make_backend();
  EXPECT_EQ(be->fe_path(), kFePath);
  EXPECT_EQ(be->fe_dom(), kFeDom);
  make_frontend();
  EXPECT_EQ(fe->be_path(), kBePath);
  EXPECT_EQ(fe->be_dom(), 0);

  start_backend();
  EXPECT_EQ(be_state(), num(XenbusStateInitWait));
  EXPECT_EQ(fake::store_read(kBePath + "/feature-test"), "1");
  start_frontend();
  EXPECT_EQ(fe_state(), num(XenbusStateInitialising));

  pump();
  EXPECT_EQ(be->state(), XenbusStateConnected);
  EXPECT_EQ(fe->state(), XenbusStateConnected);
  EXPECT_TRUE(fe->connected());
  EXPECT_EQ(be_state(), num(XenbusStateConnected));
  EXPECT_EQ(fe_state(), num(XenbusStateConnected));
  EXPECT_EQ(be->connects(), 1U);
  EXPECT_EQ(be_hooks->advertises, 1);
  EXPECT_EQ(fe_hooks->setups, 1);
  EXPECT_EQ(fe_hooks->connected_calls, 1);
  EXPECT_TRUE(be_errors.empty());
  EXPECT_TRUE(fe_errors.empty());
  EXPECT_FALSE(be->removed());
  EXPECT_EQ(fe_log, (std::vector<std::string>{num(XenbusStateInitialised), num(XenbusStateConnected)}));

  // Frontend keys written as dom7 belong to dom7.
  auto perms = toolstack->get_perms(kFePath + "/ring-ref");
  ASSERT_TRUE(perms.ok());
  EXPECT_EQ(perms.value().owner, kFeDom);
  auto info = fake::grant_info(kFeDom, fe_hooks->page.refs()[0]);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->grantee, 0);
  EXPECT_EQ(info->map_count, 1U);

  expect_data_path("ring generation 1");
  EXPECT_EQ(fake::counters().mapped_pages, 1U);
  EXPECT_EQ(fake::counters().ports, 2U);

  // Repeated watch events change nothing.
  guest_writes_state(num(XenbusStateConnected));
  pump();
  EXPECT_EQ(be->connects(), 1U);
  EXPECT_EQ(be_hooks->connect_calls, 1);
}

TEST_F(XenbusDriverTest, FrontendStartedFirstStillConnects) {
  make_both();
  start_frontend();
  pump();  // no backend yet: the frontend waits (backend state absent = vanished)
  EXPECT_EQ(fe_hooks->setups, 0);
  start_backend();
  pump();
  expect_connected("ring generation 1");
}

TEST_F(XenbusDriverTest, SetupTransactionRetryReleasesTheFirstAttempt) {
  start_both();
  fake::fail_next_commits(1);  // the Setup transaction's first commit
  pump();
  EXPECT_EQ(fe_hooks->setups, 2) << "the transaction body ran again";
  EXPECT_EQ(fe->state(), XenbusStateConnected);
  EXPECT_EQ(be->state(), XenbusStateConnected);
  EXPECT_EQ(fake::counters().grants, 1U) << "the first attempt's grant was ended";
  EXPECT_EQ(fake::counters().ports, 2U);
  expect_data_path("ring generation 2");
}

// ---- orderly close and reconnect ----------------------------------------------------------------------

TEST_F(XenbusDriverTest, FrontendCloseThenRestartReconnectsWithANewRing) {
  connect_both();
  const grant_ref_t old_ref = fe_hooks->page.refs()[0];
  close_frontend();
  EXPECT_EQ(fe_state(), num(XenbusStateClosed));
  EXPECT_FALSE(fe_hooks->up());
  pump();
  EXPECT_EQ(be->state(), XenbusStateClosed);
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  EXPECT_EQ(fake::counters().grants, 0U) << "unshared while mapped: ended at the backend's unmap";
  EXPECT_FALSE(fake::grant_info(kFeDom, old_ref).has_value());
  EXPECT_EQ(fake::counters().ports, 0U);

  // The guest's driver comes back (module reload): Closed -> Initialising, backend Reset -> InitWait.
  fe.reset();
  fe_log.clear();
  be_log.clear();
  restart_frontend();
  EXPECT_EQ(be_hooks->advertises, 2) << "Reset re-advertises";
  EXPECT_EQ(be_log.front(), num(XenbusStateInitWait));
  EXPECT_EQ(be->connects(), 2U);
  EXPECT_TRUE(be_errors.empty());
  EXPECT_TRUE(fe_errors.empty());
  expect_connected("ring generation 2");
  EXPECT_EQ(fake::counters().mapped_pages, 1U);
  EXPECT_EQ(fake::counters().grants, 1U);
}

TEST_F(XenbusDriverTest, CloseAndReconnectWithTheFrontendPumpedFirst) {
  fe_first = true;
  connect_both();
  expect_data_path("ring generation 1");
  close_frontend();
  pump();
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  fe.reset();
  restart_frontend();
  expect_connected("ring generation 2");
}

TEST_F(XenbusDriverTest, FrontendRestartWithoutCloseResetsTheBackend) {
  connect_both();
  // The guest rebooted its driver without an orderly close: the backend only sees Initialising.
  guest_writes_state(num(XenbusStateInitialising));
  pump();
  EXPECT_EQ(be_hooks->disconnects, 1);
  EXPECT_EQ(be->state(), XenbusStateInitWait);
  EXPECT_EQ(be_state(), num(XenbusStateInitWait));
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  // The frontend driver had the rings up; a real restart would release them: do so and come back.
  fe.reset();
  fe_hooks->disconnect();
  restart_frontend();
  expect_connected("ring generation 2");
}

TEST_F(XenbusDriverTest, FrontendClosingThenClosedIsFollowedByTheBackend) {
  connect_both();
  // A guest driver (not ours) that closes in two steps, like Linux's: Closing (flush), then Closed.
  fe.reset();
  guest_writes_state(num(XenbusStateClosing));
  pump();
  EXPECT_EQ(be->state(), XenbusStateClosing);
  EXPECT_EQ(be_state(), num(XenbusStateClosing));
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  guest_writes_state(num(XenbusStateClosed));
  pump();
  EXPECT_EQ(be->state(), XenbusStateClosed);
  EXPECT_EQ(be_state(), num(XenbusStateClosed)) << "a toolstack detaching the device waits for this";
  EXPECT_EQ(be_hooks->disconnects, 1);
}

// ---- faults -------------------------------------------------------------------------------------------

TEST_F(XenbusDriverTest, BackendFaultClosesAndDoesNotRemapWhileFrontendInsists) {
  connect_both();
  be->fault("test: hostile frontend");
  EXPECT_EQ(be->state(), XenbusStateClosing);
  EXPECT_EQ(be_state(), num(XenbusStateClosing));
  EXPECT_EQ(fake::store_read(kBePath + "/error"), "test: hostile frontend");
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  auto info = fake::grant_info(kFeDom, fe_hooks->page.refs()[0]);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->map_count, 0U);

  pump();  // our frontend follows: Closed, rings released
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_EQ(fe_state(), num(XenbusStateClosed));
  EXPECT_FALSE(fe_hooks->up());
  EXPECT_EQ(be->state(), XenbusStateClosed);
  EXPECT_EQ(be_state(), num(XenbusStateClosed));

  // A hostile guest keeps claiming to be connected (its refs still in xenstore): no re-map.
  for (State s : {XenbusStateConnected, XenbusStateInitialised, XenbusStateConnected}) {
    guest_writes_state(num(s));
    pump();
    EXPECT_EQ(be_hooks->connect_calls, 1);
    EXPECT_EQ(be->connects(), 1U);
    EXPECT_EQ(fake::counters().mapped_pages, 0U);
    EXPECT_NE(be->state(), XenbusStateConnected);
  }
  EXPECT_EQ(fake::store_read(kBePath + "/error"), "test: hostile frontend");
}

TEST_F(XenbusDriverTest, FrontendRestartAfterFaultClearsErrorAndReconnects) {
  connect_both();
  be->fault("test: hostile frontend");
  pump();
  fe.reset();
  restart_frontend();
  EXPECT_FALSE(fake::store_exists(kBePath + "/error"));
  EXPECT_EQ(be->connects(), 2U);
  expect_connected("ring generation 2");
}

TEST_F(XenbusDriverTest, ConnectHookFailureFaultsTheBackend) {
  be_hooks->fail_connect = true;
  start_both();
  pump();
  EXPECT_EQ(be_hooks->connect_calls, 1);
  ASSERT_EQ(be_errors.size(), 1U);
  EXPECT_EQ(be_errors[0].code, EPROTO);
  EXPECT_EQ(be_log, (std::vector<std::string>{num(XenbusStateInitWait), num(XenbusStateClosing),
                                               num(XenbusStateClosed)}));
  EXPECT_EQ(fake::store_read(kBePath + "/error"), "test: connect refused");
  EXPECT_EQ(be->connects(), 0U);
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_FALSE(fe_hooks->up());
  EXPECT_EQ(fe_hooks->connected_calls, 0);
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
  EXPECT_EQ(fake::counters().grants, 0U);
  EXPECT_EQ(fake::counters().ports, 0U);
}

TEST_F(XenbusDriverTest, BadRingRefFromFrontendFaultsTheBackend) {
  start_both();
  // Let the frontend publish Initialised, then corrupt its ring-ref before the backend reads it.
  drain_frontend();  // registration: InitWait seen
  ASSERT_EQ(fe->state(), XenbusStateInitialised);
  {
    fake::AsDomain d(kFeDom);
    ASSERT_TRUE(fe_store->write(kFePath + "/ring-ref", "999999").ok());
  }
  pump();
  EXPECT_EQ(be->connects(), 0U);
  EXPECT_TRUE(fake::store_exists(kBePath + "/error"));
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
}

TEST_F(XenbusDriverTest, SetupHookFailureClosesTheFrontend) {
  fe_hooks->fail_setup = true;
  start_both();
  pump();
  EXPECT_EQ(fe_hooks->setups, 1);
  ASSERT_EQ(fe_errors.size(), 1U);
  EXPECT_EQ(fe_errors[0].code, EIO);
  EXPECT_EQ(fe_log.front(), num(XenbusStateClosing));
  EXPECT_FALSE(fake::store_exists(kFePath + "/ring-ref")) << "the transaction was aborted";
  EXPECT_EQ(be_hooks->connect_calls, 0);
  // The backend follows the frontend down, and the frontend finishes the close.
  EXPECT_EQ(be->state(), XenbusStateClosed);
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_EQ(fe_state(), num(XenbusStateClosed));
  EXPECT_FALSE(fe_hooks->up());
}

TEST_F(XenbusDriverTest, ConnectedHookFailureClosesBothEnds) {
  fe_hooks->fail_connected = true;
  start_both();
  pump();
  EXPECT_EQ(fe_hooks->connected_calls, 1);
  ASSERT_EQ(fe_errors.size(), 1U);
  EXPECT_EQ(be_hooks->disconnects, 1);
  EXPECT_FALSE(be_hooks->up());
  EXPECT_FALSE(fe_hooks->up());
  EXPECT_EQ(be_state(), num(XenbusStateClosed));
  EXPECT_EQ(fe_state(), num(XenbusStateClosed));
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
}

// ---- vanishing ends -----------------------------------------------------------------------------------

TEST_F(XenbusDriverTest, FrontendVanishedRemovesTheBackend) {
  connect_both();
  // The guest died: the toolstack removes its device directory.
  ASSERT_TRUE(toolstack->rm(kFePath).ok());
  pump();
  EXPECT_TRUE(be->removed());
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(be_hooks->disconnects, 1);
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  // Later events (the path re-created by a new guest) are ignored by this driver.
  ASSERT_TRUE(toolstack->write(kFePath + "/state", num(XenbusStateInitialised)).ok());
  pump();
  EXPECT_EQ(be_hooks->connect_calls, 1);
  EXPECT_FALSE(be_hooks->up());
}

TEST_F(XenbusDriverTest, BackendDirectoryRemovedDetachesBothEnds) {
  connect_both();
  ASSERT_TRUE(toolstack->rm(kBePath).ok());
  pump();
  EXPECT_TRUE(be->removed());
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
  EXPECT_EQ(fe->state(), XenbusStateClosed);
  EXPECT_EQ(fe_state(), num(XenbusStateClosed));
  EXPECT_FALSE(fe_hooks->up());
  EXPECT_EQ(fake::counters().grants, 0U);
}

class XenbusGarbageState : public XenbusDriverTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(XenbusGarbageState, IsTreatedAsAVanishedFrontend) {
  connect_both();
  guest_writes_state(GetParam());
  pump();
  EXPECT_TRUE(be->removed());
  EXPECT_FALSE(be_hooks->up());
  EXPECT_EQ(fake::counters().mapped_pages, 0U);
}

INSTANTIATE_TEST_SUITE_P(Values, XenbusGarbageState, ::testing::Values("x", "9", "0", "", "-1", "44", " 4"));

// ---- construction and start() errors ------------------------------------------------------------------

class XenbusBadDomid : public XenbusDriverTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(XenbusBadDomid, FrontendIdRejected) {
  create_device(GetParam(), "0");
  expect_refused([&] { make_backend(); }, EPROTO, "accepted frontend-id '" + std::string(GetParam()) + "'");
}

TEST_P(XenbusBadDomid, BackendIdRejected) {
  create_device("7", GetParam());
  expect_refused([&] { make_frontend(); }, EPROTO, "accepted backend-id '" + std::string(GetParam()) + "'");
}

INSTANTIATE_TEST_SUITE_P(Values, XenbusBadDomid,
                         ::testing::Values("", "x", "-1", "+7", " 7", "7 ", "0x7", "32752", "65535", "99999",
                                           "123456", "7\n"));

TEST_F(XenbusDriverTest, LargestDomidIsAccepted) {
  create_device("32751", "0");
  make_backend();
  EXPECT_EQ(be->fe_dom(), 32751);
}

TEST_F(XenbusDriverTest, MissingNodesRejected) {
  create_device();
  ASSERT_TRUE(toolstack->rm(kBePath + "/frontend").ok());
  ASSERT_TRUE(toolstack->rm(kFePath + "/backend-id").ok());
  ASSERT_NO_FATAL_FAILURE(expect_refused([&] { make_backend(); }, ENOENT, "no frontend node"));
  expect_refused([&] { make_frontend(); }, ENOENT, "no backend-id node");
}

TEST_F(XenbusDriverTest, FrontendCannotReadAnUnreadableBackend) {
  create_device();
  ASSERT_TRUE(toolstack->set_perms(kFePath + "/backend", xen::Perms{0, xen::Access::None, {}}).ok());
  expect_refused([&] { make_frontend(); }, EACCES, "read a node dom7 may not read");
}

TEST_F(XenbusDriverTest, WriteFailuresDuringStartAreReportedAndRetryable) {
  make_both();

  fake::fail_next_writes(1, EIO);
  auto s = be->start();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EIO);
  EXPECT_FALSE(fake::store_exists(kBePath + "/feature-test")) << "advertise transaction aborted";
  EXPECT_FALSE(fake::store_exists(kBePath + "/state"));
  EXPECT_EQ(fake::counters().xs_transactions, 0U);

  {
    fake::AsDomain d(kFeDom);
    fake::fail_next_writes(1, EACCES);
    auto f = fe->start();
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().code, EACCES);
  }
  EXPECT_EQ(fe_state(), num(XenbusStateInitialising)) << "toolstack's value untouched";

  // Nothing was watched: both can simply start again.
  pump();
  EXPECT_EQ(be_hooks->connect_calls, 0);
  start_backend();
  start_frontend();
  pump();
  expect_connected("ring generation 1");
}

TEST_F(XenbusDriverTest, WriteFailureBeforeSetupAllocatesNothing) {
  start_both();
  // The frontend's registration event: InitWait seen -> Setup; its first write (Initialising) fails.
  fake::fail_next_writes(1);
  drain_frontend();
  ASSERT_EQ(fe_errors.size(), 1U);
  EXPECT_EQ(fe_errors[0].code, EIO);
  EXPECT_FALSE(fe_hooks->up());
  pump();
  EXPECT_EQ(be_hooks->connect_calls, 0);
  EXPECT_EQ(fake::counters().grants, 0U);
  EXPECT_EQ(fake::counters().ports, 0U);
}

}  // namespace
}  // namespace gears::xenbus
