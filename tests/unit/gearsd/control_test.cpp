#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <string>

#include "dom0/gearsctl/client.hpp"
#include "dom0/gearsd/control.hpp"
#include "tests/unit/gearsd/test_util.hpp"

using namespace gears::daemon;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// A raw stream client: exact bytes out, lines back.
class RawClient {
 public:
  explicit RawClient(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.data(), path.size());
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  [[nodiscard]] bool connected() const { return connected_; }
  void send(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const auto n = ::send(fd_.get(), s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may close on us (oversized request)
      off += static_cast<std::size_t>(n);
    }
  }
  void shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }
  // Next line, or "<eof>". The poll bound only keeps a broken server from hanging the test.
  std::string line() {
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20000) <= 0) return "<timeout>";
      char b[4096];
      const auto n = ::recv(fd_.get(), b, sizeof b, 0);
      if (n <= 0) return "<eof>";
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }
  json response() { return json::parse(line(), nullptr, false); }

 private:
  Fd fd_;
  bool connected_ = false;
  std::string buf_;
};

// Echo handler: {"ok":true,"echo":<request>}; verb "later" answers from a timer, verb "throw" throws.
struct Fixture {
  gears::test::TempDir dir;
  Reactor loop;
  std::string path = dir.file("ctl.sock");
  std::unique_ptr<ControlServer> server;
  std::unique_ptr<gears::test::LoopThread> thread;

  explicit Fixture(std::size_t max_request = ControlServer::kDefaultMaxRequest) {
    server = std::make_unique<ControlServer>(
        loop, path,
        [this](const json& req, ControlServer::Reply reply) {
          const auto verb = req["verb"].get<std::string>();
          if (verb == "throw") throw std::runtime_error("boom");
          if (verb == "later") {
            auto shared = std::make_shared<ControlServer::Reply>(std::move(reply));
            (void)loop.add_timer(1ms, 0ns, [shared, req] { (*shared)({{"ok", true}, {"echo", req}}); });
            return;
          }
          reply({{"ok", true}, {"echo", req}});
        },
        max_request);
    thread = std::make_unique<gears::test::LoopThread>(loop);
  }
  ~Fixture() {
    thread->call([this] { server.reset(); });
    thread.reset();
  }
};

}  // namespace

TEST(ControlServer, AnswersAWellFormedRequest) {
  Fixture f;
  gears::ctl::ControlClient c(f.path);
  const json r = c.request({{"verb", "ping"}, {"x", 1}});
  EXPECT_EQ(r["ok"], true);
  EXPECT_EQ(r["echo"]["x"], 1);
}

TEST(ControlServer, EchoesRequestId) {
  Fixture f;
  RawClient c(f.path);
  ASSERT_TRUE(c.connected());
  c.send("{\"verb\":\"ping\",\"id\":\"abc\"}\n");
  EXPECT_EQ(c.response()["id"], "abc");
}

TEST(ControlServer, MalformedInputGetsErrorsAndTheConnectionLives) {
  Fixture f;
  RawClient c(f.path);
  ASSERT_TRUE(c.connected());
  const std::pair<const char*, const char*> cases[] = {
      {"not json\n", "malformed JSON"},
      {"{\"verb\":\n", "malformed JSON"},
      {"[1,2]\n", "JSON object"},
      {"\"verb\"\n", "JSON object"},
      {"{}\n", "\"verb\""},
      {"{\"verb\":7}\n", "\"verb\""},
      {"{\"verb\":\"throw\"}\n", "internal error: boom"},
      {"\xff\xfe\n", "malformed JSON"},
  };
  for (const auto& [in, needle] : cases) {
    c.send(in);
    const json r = c.response();
    ASSERT_TRUE(r.is_object()) << in;
    EXPECT_EQ(r["ok"], false) << in;
    EXPECT_NE(r["error"].get<std::string>().find(needle), std::string::npos) << in << " -> " << r.dump();
  }
  c.send("{\"verb\":\"ping\"}\n");  // still served
  EXPECT_EQ(c.response()["ok"], true);
}

TEST(ControlServer, BlankLinesAndCrlfAreTolerated) {
  Fixture f;
  RawClient c(f.path);
  c.send("\n  \n{\"verb\":\"ping\"}\r\n");
  EXPECT_EQ(c.response()["ok"], true);
}

TEST(ControlServer, OversizedRequestIsRefusedAndClosed) {
  Fixture f(1024);
  RawClient c(f.path);
  c.send("{\"verb\":\"ping\",\"pad\":\"" + std::string(5000, 'a') + "\"}\n");
  const json r = c.response();
  EXPECT_EQ(r["ok"], false);
  EXPECT_NE(r["error"].get<std::string>().find("too large"), std::string::npos);
  EXPECT_EQ(c.line(), "<eof>");
  // The server itself is fine.
  gears::ctl::ControlClient ok(f.path);
  EXPECT_EQ(ok.request({{"verb", "ping"}})["ok"], true);
}

TEST(ControlServer, OversizedLineWithoutNewlineIsRefused) {
  Fixture f(1024);
  RawClient c(f.path);
  c.send(std::string(4096, '{'));
  EXPECT_EQ(c.response()["ok"], false);
}

TEST(ControlServer, DeeplyNestedJsonDoesNotCrash) {
  Fixture f;
  RawClient c(f.path);
  c.send(std::string(30000, '[') + std::string(30000, ']') + "\n");
  const json r = c.response();
  EXPECT_EQ(r["ok"], false);
}

TEST(ControlServer, PipelinedRequestsAreAnsweredInOrderEvenWhenAsync) {
  Fixture f;
  RawClient c(f.path);
  c.send("{\"verb\":\"later\",\"n\":1}\n{\"verb\":\"ping\",\"n\":2}\n{\"verb\":\"later\",\"n\":3}\nbad\n{\"verb\":\"ping\",\"n\":5}\n");
  EXPECT_EQ(c.response()["echo"]["n"], 1);
  EXPECT_EQ(c.response()["echo"]["n"], 2);
  EXPECT_EQ(c.response()["echo"]["n"], 3);
  EXPECT_EQ(c.response()["ok"], false);
  EXPECT_EQ(c.response()["echo"]["n"], 5);
}

TEST(ControlServer, RequestSplitAcrossWritesAndFinalLineWithoutNewline) {
  Fixture f;
  RawClient c(f.path);
  c.send("{\"verb\":");
  c.send("\"ping\",\"n\":1}\n{\"verb\":\"later\",\"n\":2}");
  c.shutdown_write();  // EOF ends the last request
  EXPECT_EQ(c.response()["echo"]["n"], 1);
  EXPECT_EQ(c.response()["echo"]["n"], 2);
  EXPECT_EQ(c.line(), "<eof>");
}

TEST(ControlServer, ClientVanishingWithAPendingReplyIsHarmless) {
  Fixture f;
  {
    RawClient c(f.path);
    c.send("{\"verb\":\"later\"}\n");
  }  // closed before the timer answers
  gears::ctl::ControlClient ok(f.path);
  EXPECT_EQ(ok.request({{"verb", "ping"}})["ok"], true);
}

TEST(ControlServer, RefusesASecondServerOnALiveSocketAndReplacesAStaleOne) {
  Fixture f;
  Reactor other;
  EXPECT_THROW(ControlServer(other, f.path, [](const json&, ControlServer::Reply) {}), std::runtime_error);

  gears::test::TempDir dir;
  const std::string stale = dir.file("stale.sock");
  {
    // Leave a socket file behind with nobody listening.
    Fd s(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, stale.data(), stale.size());
    ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  }
  EXPECT_NO_THROW(ControlServer(other, stale, [](const json&, ControlServer::Reply) {}));
  EXPECT_FALSE(std::filesystem::exists(stale));  // unlinked on destruction

  const std::string regular = dir.write("plain-file", "x");
  EXPECT_THROW(ControlServer(other, regular, [](const json&, ControlServer::Reply) {}), std::runtime_error);
}

TEST(ControlClient, ReportsAnAbsentDaemonClearly) {
  gears::test::TempDir dir;
  try {
    gears::ctl::ControlClient c(dir.file("nobody.sock"));
    FAIL() << "connected to nothing";
  } catch (const gears::ctl::CtlError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach gearsd"), std::string::npos);
  }
}
