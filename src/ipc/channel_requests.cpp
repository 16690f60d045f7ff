// Channel: requests in flight, reply boxes, synchronous and asynchronous requests.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "../runtime/registry.hpp"
#include "channel_impl.hpp"
#include "mpod/error.hpp"
#include "mpod/log.hpp"

namespace mpod {

using namespace channel_detail;

// ---- requests ----

std::shared_ptr<ChannelImpl::Pending> ChannelImpl::start_request(const std::vector<ProcessId>& to,
                                                                 std::string_view name,
                                                                 std::span<const uint8_t> data,
                                                                 std::span<const int> fds, Timeout timeout,
                                                                 std::function<void(Replies)> done, int box) {
  wire::validate_message(name, data.size(), fds.size());  // refused alike with or without peers
  auto p = std::make_shared<Pending>();
  p->name = name;
  p->deadline_ns = deadline_after(timeout);
  p->done = std::move(done);
  p->waiting = to;
  wire::Routing routing;
  if (box >= 0) {
    // The box is ours alone until released; a new generation tells late
    // replies to an earlier request apart.
    p->box = box;
    p->gen = box_gen_[box] = (box_gen_[box] + 1) & 0x3fffffff;
    inbox_->box_state(uint32_t(box)).store(box_word(p->gen, mailbox::box_waiting), std::memory_order_release);
    routing = {uint32_t(box) + 1, p->gen, 0};
  }
  {
    std::lock_guard g(mu_);
    p->id = next_id_++;
    pending_.emplace(p->id, p);
  }
  requests_.fetch_add(1, std::memory_order_relaxed);
  for (auto& peer : to) {
    auto r = deliver(peer, wire::Type::request, p->id, name, data, fds, p->deadline_ns, routing);
    if (r == Delivery::ok) continue;
    PeerFailure f{peer, r == Delivery::dead ? PeerError::dead : PeerError::send_failed,
                  r == Delivery::dead ? "not alive" : "socket queue full until the deadline"};
    std::lock_guard g(mu_);
    settle_locked(*p, peer, nullptr, &f);
  }
  std::lock_guard g(mu_);
  if (p->waiting.empty() && !p->complete) complete_locked(*p);
  if (p->done) os::signal_event(stop_event_.get());  // the receive thread recomputes its next deadline
  return p;
}

void ChannelImpl::settle_locked(Pending& p, const ProcessId& peer, Message* reply, const PeerFailure* failure) {
  auto it = std::find(p.waiting.begin(), p.waiting.end(), peer);
  if (it == p.waiting.end()) return;  // not asked, or already settled: a late or forged reply
  p.waiting.erase(it);
  if (reply) {
    p.result.replies.push_back(std::move(*reply));
    replies_.fetch_add(1, std::memory_order_relaxed);
  } else {
    p.result.failures.push_back(*failure);
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
  if (p.waiting.empty()) complete_locked(p);
}

void ChannelImpl::settle_reply_locked(Pending& p, wire::Type type, Message& msg) {
  if (type == wire::Type::reply) return settle_locked(p, msg.from, &msg, nullptr);
  PeerError e = !msg.data.empty() && msg.data[0] <= uint8_t(PeerError::send_failed) ? PeerError(msg.data[0])
                                                                                  : PeerError::handler_failed;
  std::string text = msg.data.empty() ? "" : std::string(msg.text().substr(1));
  PeerFailure f{msg.from, e, text};
  settle_locked(p, msg.from, nullptr, &f);
}

void ChannelImpl::complete_locked(Pending& p) {
  p.complete = true;
  pending_.erase(p.id);
  if (p.done) ready_.emplace_back(std::move(p.done), std::move(p.result));
  if (p.box >= 0) {
    // A reply written into the box meanwhile wins; otherwise the requester
    // reads the result from `p`.
    // The requester is woken either way: a replier that claimed the box
    // (box_writing) and then died never wakes it, and the requester, asleep
    // since before the claim, would sleep to its deadline.
    uint32_t expected = box_word(p.gen, mailbox::box_waiting);
    auto& state = inbox_->box_state(uint32_t(p.box));
    state.compare_exchange_strong(expected, box_word(p.gen, mailbox::box_done), std::memory_order_acq_rel);
    os::futex_wake(&state);
  }
  cv_.notify_all();
}

Replies ChannelImpl::wait_request(const std::shared_ptr<Pending>& p) {
  std::unique_lock lk(mu_);
  while (!p->complete) {
    const uint64_t now = os::monotonic_ns();
    if (now >= p->deadline_ns) {
      for (auto& peer : p->waiting) {
        p->result.failures.push_back({peer, PeerError::timed_out, "no reply within the timeout"});
        failures_.fetch_add(1, std::memory_order_relaxed);
      }
      p->waiting.clear();
      p->complete = true;
      pending_.erase(p->id);
      break;
    }
    cv_.wait_for(lk, std::chrono::nanoseconds(p->deadline_ns - now));
  }
  return std::move(p->result);
}

// Waits for the reply box of a single-peer request: polls it briefly (a
// reply usually comes within microseconds), then sleeps on its futex. The
// replier, or complete_locked() for every other outcome, moves it on.
Replies ChannelImpl::wait_box(const std::shared_ptr<Pending>& p) {
  auto& state = inbox_->box_state(uint32_t(p->box));
  const uint32_t waiting = box_word(p->gen, mailbox::box_waiting);
  const uint64_t spin_until = os::monotonic_ns() + kRequesterSpinNs;
  uint32_t s = state.load(std::memory_order_acquire);
  for (uint32_t step = 0; s == waiting; ++step) {
    const uint64_t now = os::monotonic_ns();
    if (now >= p->deadline_ns) {
      // Give up, unless the replier is writing right now.
      uint32_t expected = waiting;
      if (state.compare_exchange_strong(expected, box_word(p->gen, mailbox::box_done), std::memory_order_acquire)) {
        s = box_word(p->gen, mailbox::box_done);
        break;
      }
      s = expected;
      break;
    }
    if (now < spin_until) os::spin_pause(step);
    else os::futex_wait(&state, waiting, p->deadline_ns - now);
    s = state.load(std::memory_order_acquire);
  }
  // A replier that claimed the box finishes within a few microseconds unless
  // it died: then its death, once reported, completes the request.
  for (uint64_t give_up = os::monotonic_ns() + 1'000'000'000; s == box_word(p->gen, mailbox::box_writing);) {
    if (os::monotonic_ns() >= give_up) break;
    {
      std::lock_guard g(mu_);
      if (p->complete) break;
    }
    os::sleep_ns(10'000);
    s = state.load(std::memory_order_acquire);
  }
  if (s == box_word(p->gen, mailbox::box_ready)) {
    uint8_t copy[mailbox::kBoxData];
    const uint32_t len = std::min(inbox_->box_len(uint32_t(p->box)), mailbox::kBoxData);
    std::memcpy(copy, inbox_->box_data(uint32_t(p->box)), len);
    wire::DecodeError why;
    auto d = wire::decode({copy, len}, 0, &why);
    std::lock_guard g(mu_);
    if (!p->complete) {
      if (d && (d->type == wire::Type::reply || d->type == wire::Type::error_reply) && d->request_id == p->id) {
        Message msg;
        msg.from = d->sender;
        msg.name = d->name;
        msg.data.assign(d->payload.begin(), d->payload.end());
        received_.fetch_add(1, std::memory_order_relaxed);
        settle_reply_locked(*p, d->type, msg);
      } else {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        MPOD_LOG(ipc, warning, "dropped a malformed reply to '%s' in reply box %d of %s: %s", p->name.c_str(), p->box,
                 inbox_->path().c_str(), d ? "it answers another request" : why.reason.c_str());
      }
    }
  }
  std::lock_guard g(mu_);
  if (!p->complete) {
    for (auto& peer : p->waiting) {
      p->result.failures.push_back({peer, PeerError::timed_out, "no reply within the timeout"});
      failures_.fetch_add(1, std::memory_order_relaxed);
    }
    p->waiting.clear();
    p->complete = true;
    pending_.erase(p->id);
  }
  return std::move(p->result);
}

int ChannelImpl::acquire_box() {
  std::lock_guard g(boxes_mu_);
  if (free_boxes_.empty()) return -1;
  int b = free_boxes_.back();
  free_boxes_.pop_back();
  return b;
}

void ChannelImpl::release_box(int box) {
  // A box whose replier died while writing is never used again.
  const uint32_t phase = inbox_->box_state(uint32_t(box)).load(std::memory_order_acquire) & 3;
  if (phase == mailbox::box_writing) {
    MPOD_LOG(ipc, warning, "reply box %d of %s was left half-written by a dead replier; retiring it", box,
             inbox_->path().c_str());
    return;
  }
  std::lock_guard g(boxes_mu_);
  free_boxes_.push_back(box);
}

Replies ChannelImpl::request(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                             Timeout timeout, std::span<const int> fds) {
  if (std::this_thread::get_id() == receiver_.get_id())
    throw Error(Errc::invalid_argument, "a synchronous request cannot be made from a channel handler; use request_async");
  const int box = acquire_box();
  if (box < 0) return wait_request(start_request({to}, name, data, fds, timeout, {}));
  struct Release {
    ChannelImpl* self;
    int box;
    ~Release() { self->release_box(box); }
  } release{this, box};
  return wait_box(start_request({to}, name, data, fds, timeout, {}, box));
}

Replies ChannelImpl::request_all(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                                 std::span<const int> fds) {
  if (std::this_thread::get_id() == receiver_.get_id())
    throw Error(Errc::invalid_argument, "a synchronous request cannot be made from a channel handler; use request_all_async");
  return wait_request(start_request(live_peers(), name, data, fds, timeout, {}));
}

void ChannelImpl::request_async(const ProcessId& to, std::string_view name, std::span<const uint8_t> data,
                                Timeout timeout, std::function<void(Replies)> done) {
  if (!done) throw Error(Errc::invalid_argument, "request_async needs a completion callback");
  start_request({to}, name, data, {}, timeout, std::move(done));
}

void ChannelImpl::request_all_async(std::string_view name, std::span<const uint8_t> data, Timeout timeout,
                                    std::function<void(Replies)> done) {
  if (!done) throw Error(Errc::invalid_argument, "request_all_async needs a completion callback");
  start_request(live_peers(), name, data, {}, timeout, std::move(done));
}

void ChannelImpl::fail_peer_everywhere(const ProcessId& peer, const std::string& why) {
  std::lock_guard g(mu_);
  std::vector<std::shared_ptr<Pending>> affected;
  for (auto& [id, p] : pending_)
    if (std::find(p->waiting.begin(), p->waiting.end(), peer) != p->waiting.end()) affected.push_back(p);
  PeerFailure f{peer, PeerError::dead, why};
  for (auto& p : affected) settle_locked(*p, peer, nullptr, &f);
  if (!affected.empty()) os::signal_event(stop_event_.get());
}

}  // namespace mpod
