// NBD target over libnbd's asynchronous API, driven by the device's reactor: the device polls
// nbd_aio_get_fd() for the direction libnbd wants (poll_events()) and calls on_ready(). Completion
// callbacks only record (tag, result); on_ready() reports them, so no callback ever re-enters the device.
#include <libnbd.h>
#include <sys/epoll.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

#include "dom0/backends/blk/target.hpp"

namespace gears::blk {
namespace {

class NbdTarget final : public Target {
 public:
  NbdTarget(const std::string& uri, const TargetOptions& o) : uri_(uri), opts_(o) {
    h_ = ::nbd_create();
    if (h_ == nullptr) throw std::runtime_error(std::string("nbd_create: ") + ::nbd_get_error());
    if (::nbd_connect_uri(h_, uri.c_str()) == -1) fail("connect");
    const std::int64_t size = ::nbd_get_size(h_);
    if (size < 4096) fail("export size");
    size_ = static_cast<std::uint64_t>(size);
    ro_ = o.read_only || ::nbd_is_read_only(h_) == 1;
    trim_ = !ro_ && ::nbd_can_trim(h_) == 1;
    flush_ = ::nbd_can_flush(h_) == 1;
    depth_ = std::max<std::uint32_t>(1, std::min<std::uint32_t>(o.depth, 256));
  }
  ~NbdTarget() override {
    // Commands still in flight reference the device's buffers: finish them before the device dies.
    while (::nbd_aio_in_flight(h_) > 0 && ::nbd_poll(h_, 1000) > 0) {
    }
    ::nbd_close(h_);
  }

  std::uint64_t size_bytes() const override { return size_; }
  bool read_only() const override { return ro_; }
  bool can_discard() const override { return trim_; }
  std::string describe() const override { return uri_; }
  std::uint32_t depth() const override { return depth_; }
  int fd() const override { return ::nbd_aio_get_fd(h_); }
  std::uint32_t poll_events() const override {
    const unsigned d = ::nbd_aio_get_direction(h_);
    std::uint32_t ev = 0;
    if (d & LIBNBD_AIO_DIRECTION_READ) ev |= EPOLLIN;
    if (d & LIBNBD_AIO_DIRECTION_WRITE) ev |= EPOLLOUT;
    return ev;
  }
  std::size_t in_flight() const override { return inflight_; }

  Status submit(const TargetIo& io) override {
    if (inflight_ >= depth_) return Error{EAGAIN, "target: queue full"};
    auto* c = new Cookie{this, io.tag};
    nbd_completion_callback cb{.callback = &NbdTarget::completed, .user_data = c, .free = &NbdTarget::release};
    std::int64_t rc = -1;
    switch (io.kind) {
      case IoKind::read: rc = ::nbd_aio_pread(h_, io.buf.data(), io.buf.size(), io.offset, cb, 0); break;
      case IoKind::write: rc = ::nbd_aio_pwrite(h_, io.buf.data(), io.buf.size(), io.offset, cb, 0); break;
      case IoKind::flush:
        if (!flush_) {  // the server writes through: nothing to flush
          done_.push_back({io.tag, 0});
          delete c;
          ++inflight_;
          return {};
        }
        rc = ::nbd_aio_flush(h_, cb, 0);
        break;
      case IoKind::discard: rc = ::nbd_aio_trim(h_, io.length, io.offset, cb, 0); break;
    }
    if (rc == -1) return Error{EIO, "target: nbd submission failed"};  // libnbd called .free
    ++inflight_;
    return {};
  }
  void kick() override {}
  void on_ready(std::uint32_t events, const Done& done) override {
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) (void)::nbd_aio_notify_read(h_);
    if (events & EPOLLOUT) (void)::nbd_aio_notify_write(h_);
    std::vector<std::pair<std::uint64_t, int>> batch;
    batch.swap(done_);
    for (auto [tag, res] : batch) {
      --inflight_;
      done(tag, res);
    }
  }

 private:
  struct Cookie {
    NbdTarget* self;
    std::uint64_t tag;
  };
  static int completed(void* user, int* error) {
    auto* c = static_cast<Cookie*>(user);
    c->self->done_.push_back({c->tag, *error == 0 ? 0 : -*error});
    return 1;  // retire the command
  }
  static void release(void* user) { delete static_cast<Cookie*>(user); }
  [[noreturn]] void fail(const char* what) {
    const std::string msg = std::string("target ") + uri_ + ": " + what + ": " + ::nbd_get_error();
    ::nbd_close(h_);
    throw std::runtime_error(msg);
  }

  std::string uri_;
  TargetOptions opts_;
  nbd_handle* h_ = nullptr;
  std::uint64_t size_ = 0;
  bool ro_ = false, trim_ = false, flush_ = false;
  std::uint32_t depth_ = 64;
  std::size_t inflight_ = 0;
  std::vector<std::pair<std::uint64_t, int>> done_;
};

}  // namespace

std::unique_ptr<Target> open_nbd_target(const std::string& uri, const TargetOptions& opts) {
  return std::make_unique<NbdTarget>(uri, opts);
}

}  // namespace gears::blk
