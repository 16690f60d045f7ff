/* dpdk-client-server server|client|digest ... [EAL options]
 *
 * mpod's client_server_mp example (examples/client_server_mp: mpod-mp-server,
 * mpod-mp-client) ported back to DPDK 22.11, so mpod-bench-client-server can
 * run the same synthetic workload on both and compare packets per second.
 * Written in C against DPDK's public API only; every step mirrors the mpod
 * example's, line for line where the work is per packet:
 *
 *   server C N BURST RING_SIZE SEED PAYLOAD POOL_OPS [EAL options, --proc-type=primary]
 *     The primary. Creates the pool MProc_pktmbuf_pool (rte_mempool of
 *     C*RING_SIZE + (C+1)*(2*256 + 2*512) buffers of 2048 bytes, cache 256,
 *     on the mempool handler POOL_OPS: ring_mp_mc is rte_mempool_create's
 *     default; ring_mt_rts and ring_mt_hts are DPDK's handlers for
 *     overcommitted CPUs),
 *     one SP/SC ring of exactly RING_SIZE per client (RING_F_EXACT_SZ: the
 *     same capacity as mpod's Ring::create(RING_SIZE)), the control block;
 *     waits for all C clients; generates N packets exactly as mpod-mp-server
 *     does (4096 flows, splitmix64 generator, payload of 46..1500 bytes, or
 *     of PAYLOAD bytes if not 0, filled 8 bytes at a time and checksummed,
 *     flow hash % C picks the client, bursts
 *     of BURST, a full ring drops and gives the buffers back, control block
 *     counters published after every burst); says finish; waits until every
 *     client has drained its ring; checks every buffer is back; prints
 *       summary role=server tx=<enqueued> clients=<C> drops=<dropped>
 *   client K BURST [EAL options, --proc-type=secondary, an lcore id of its own]
 *     A secondary: claims slot K, dequeues bursts from its ring, checks every
 *     packet as mpod-mp-client does (buffer belongs to the pool: range and
 *     stride; length; payload checksum over all its bytes; flow hashes to K;
 *     sequence growing), gives the buffers back, and when the server says
 *     finish and the ring is empty, flushes its cache and prints
 *       summary role=client id=<K> rx=<packets> bad=<bad> pid=<pid>
 *   digest SEED C N PAYLOAD
 *     No EAL: prints a digest of the first N packets the server would make
 *     (per-client counts, sums of lengths and checksums), which the driver
 *     compares with the same digest computed from mpod's packet.hpp, so the
 *     two sides provably make the same packets.
 *
 * Not mirrored (idle paths only, never per packet): mpod's liveness checks
 * of dead clients and of a vanished server, and progress statistics.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_memory.h>
#include <rte_memzone.h>
#include <rte_ring.h>

/* ---- packet.hpp, in C ---- */

#define BUF_SIZE 2048u
#define MIN_PAYLOAD 46u
#define MAX_PAYLOAD 1500u

struct five_tuple {
  uint32_t src_ip, dst_ip;
  uint16_t src_port, dst_port;
  uint8_t proto;
  uint8_t pad[3];
};

struct packet_header {
  struct five_tuple flow;
  uint64_t seq;
  uint32_t len;
  uint32_t checksum;
};
_Static_assert(sizeof(struct packet_header) == 32, "same header as mpod's");

static inline uint8_t* payload(void* pkt) { return (uint8_t*)pkt + sizeof(struct packet_header); }

static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct rng {
  uint64_t s;
};
static inline uint64_t rng_next(struct rng* r) { return mix64(r->s += 0x9e3779b97f4a7c15ull); }

static inline uint32_t flow_hash(const struct five_tuple* f) {
  const uint64_t ips = (uint64_t)f->src_ip << 32 | f->dst_ip;
  const uint64_t rest = (uint64_t)f->src_port << 24 | (uint64_t)f->dst_port << 8 | f->proto;
  return (uint32_t)(mix64(ips ^ mix64(rest + 0x5bd1e995)) >> 32);
}

static inline uint32_t client_of(const struct five_tuple* f, uint32_t clients) { return flow_hash(f) % clients; }

static struct five_tuple random_flow(struct rng* r) {
  const uint64_t a = rng_next(r), b = rng_next(r);
  struct five_tuple f;
  memset(&f, 0, sizeof f);
  f.src_ip = 0x0a000000u | (uint32_t)(a & 0xffffff);
  f.dst_ip = 0xc0a80000u | (uint32_t)((a >> 24) & 0xffff);
  f.src_port = (uint16_t)(1024 + (b & 0xffff) % 64512);
  f.dst_port = (uint16_t)((b >> 16) & 1 ? 443 : 53);
  f.proto = f.dst_port == 53 ? 17 : 6;
  return f;
}

static inline uint32_t payload_checksum(const uint8_t* p, uint32_t len) {
  uint64_t a = 1, b = 0;
  uint32_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    a += w;
    b += a;
  }
  if (i < len) {
    uint64_t w = 0;
    memcpy(&w, p + i, len - i);
    a += w;
    b += a;
  }
  return (uint32_t)(mix64(a ^ mix64(b) ^ len));
}

static inline uint32_t payload_length(uint64_t seq, uint32_t fixed) {
  return fixed ? fixed : MIN_PAYLOAD + (uint32_t)(mix64(seq) % (MAX_PAYLOAD - MIN_PAYLOAD + 1));
}

/* Not inlined, as in packet.hpp (which says why). */
static __attribute__((noinline)) void fill_packet(void* buf, const struct five_tuple* f, uint64_t seq,
                                                  uint32_t fixed_len) {
  struct packet_header* h = buf;
  h->flow = *f;
  h->seq = seq;
  h->len = payload_length(seq, fixed_len);
  uint8_t* p = payload(buf);
  struct rng bytes = {seq ^ 0x243f6a8885a308d3ull};
  for (uint32_t i = 0; i < h->len; i += 8) {
    const uint64_t w = rng_next(&bytes);
    memcpy(p + i, &w, 8);
  }
  h->checksum = payload_checksum(p, h->len);
}

enum verdict { V_OK, V_BAD_LENGTH, V_BAD_CHECKSUM, V_WRONG_CLIENT, V_OUT_OF_ORDER };

static inline enum verdict verify_packet(const void* buf, uint32_t clients, uint32_t me, uint64_t* last_seq, int first) {
  const struct packet_header* h = buf;
  if (h->len < MIN_PAYLOAD || h->len > MAX_PAYLOAD) return V_BAD_LENGTH;
  if (payload_checksum((const uint8_t*)buf + sizeof *h, h->len) != h->checksum) return V_BAD_CHECKSUM;
  if (client_of(&h->flow, clients) != me) return V_WRONG_CLIENT;
  if (!first && h->seq <= *last_seq) return V_OUT_OF_ORDER;
  *last_seq = h->seq;
  return V_OK;
}

/* ---- control.hpp, in C ---- */

#define POOL_NAME "MProc_pktmbuf_pool"
#define CONTROL_NAME "MProc_control"
#define RING_FMT "MProc_Client_%u"
#define MAX_CLIENTS 32u
#define MAX_BURST 512u /* mpod's Mempool::kMaxBulk */
#define POOL_CACHE 256u
#define FLOWS 4096u
#define CONTROL_MAGIC 0x43534d50u

enum { S_FREE = 0, S_CLAIMING = 1, S_ATTACHED = 2, S_DONE = 3, S_LEFT = 4 };

struct client_slot {
  uint32_t state __attribute__((aligned(64)));
  int32_t pid;
  char hostname[32];
  uint64_t rx __attribute__((aligned(64))); /* written by the client only, on its own cache line */
  uint64_t bad;
};

struct control {
  uint32_t magic;
  uint32_t clients;
  uint32_t ring_size;
  uint32_t finish;
  uint64_t generated __attribute__((aligned(64))), tx, drops;
  struct client_slot slots[MAX_CLIENTS];
};

/* ---- common ---- */

/* examples/common/backoff.hpp: yield 32 times, then sleep 50 us doubling to 1 ms. */
struct backoff {
  uint32_t idle, sleep_us;
};
static void backoff_idle(struct backoff* b) {
  if (++b->idle < 32) {
    sched_yield();
    return;
  }
  struct timespec ts = {0, (long)b->sleep_us * 1000};
  nanosleep(&ts, NULL);
  if (b->sleep_us < 1000) b->sleep_us *= 2;
}
static void backoff_reset(struct backoff* b) {
  b->idle = 0;
  b->sleep_us = 50;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char* what) {
  fprintf(stderr, "dpdk-client-server: %s (rte_errno %d: %s)\n", what, rte_errno, rte_strerror(rte_errno));
  exit(1);
}

/* ---- server ---- */

struct flow {
  struct five_tuple tuple;
  uint32_t client;
};

static struct flow flows[FLOWS];

static void make_flows(uint64_t seed, uint32_t clients) {
  struct rng r = {seed * 0x9e3779b97f4a7c15ull + 1};
  for (uint32_t i = 0; i < FLOWS; ++i) {
    flows[i].tuple = random_flow(&r);
    flows[i].client = client_of(&flows[i].tuple, clients);
  }
}

struct server {
  uint32_t clients;
  uint64_t packets, burst, ring_size;
  uint32_t payload; /* 0: mixed lengths */
  struct rte_mempool* pool;
  struct rte_ring* rings[MAX_CLIENTS];
  struct control* ctl;
  struct rng rng;
  void* pending[MAX_CLIENTS][MAX_BURST];
  uint32_t npending[MAX_CLIENTS];
  uint8_t dead[MAX_CLIENTS]; /* mpod's server marks clients that died; never set here */
  uint64_t generated, tx, drops;
};

static struct server srv;

static void server_flush(uint32_t k) {
  const uint32_t n = srv.npending[k];
  if (n == 0) return;
  srv.npending[k] = 0;
  const int gone = srv.dead[k] || __atomic_load_n(&srv.ctl->slots[k].state, __ATOMIC_RELAXED) == S_LEFT;
  const uint32_t sent = gone ? 0 : rte_ring_enqueue_burst(srv.rings[k], srv.pending[k], n, NULL);
  srv.tx += sent;
  if (sent < n) {
    rte_mempool_put_bulk(srv.pool, srv.pending[k] + sent, n - sent);
    srv.drops += n - sent;
  }
}

static void server_publish(void) {
  __atomic_store_n(&srv.ctl->generated, srv.generated, __ATOMIC_RELAXED);
  __atomic_store_n(&srv.ctl->tx, srv.tx, __ATOMIC_RELAXED);
  __atomic_store_n(&srv.ctl->drops, srv.drops, __ATOMIC_RELAXED);
}

static void server_generate(void) {
  void* bufs[MAX_BURST];
  struct backoff backoff = {0, 50};
  while (srv.generated < srv.packets) {
    const uint32_t b = (uint32_t)(srv.packets - srv.generated < srv.burst ? srv.packets - srv.generated : srv.burst);
    if (rte_mempool_get_bulk(srv.pool, bufs, b) != 0) { /* every buffer is in a ring or a cache */
      backoff_idle(&backoff);
      continue;
    }
    backoff_reset(&backoff);
    for (uint32_t i = 0; i < b; ++i) {
      const struct flow* f = &flows[rng_next(&srv.rng) % FLOWS];
      fill_packet(bufs[i], &f->tuple, srv.generated + i, srv.payload);
      srv.pending[f->client][srv.npending[f->client]++] = bufs[i];
    }
    srv.generated += b;
    const uint64_t drops_before = srv.drops;
    for (uint32_t k = 0; k < srv.clients; ++k) server_flush(k);
    server_publish();
    if (srv.drops != drops_before) sched_yield();
  }
}

static int run_server(uint32_t clients, uint64_t packets, uint64_t burst, uint64_t ring_size, uint64_t seed,
                      uint32_t payload, const char* pool_ops) {
  srv.clients = clients;
  srv.payload = payload;
  srv.packets = packets;
  srv.burst = burst;
  srv.ring_size = ring_size;
  const uint64_t n = clients * ring_size + (clients + 1) * (2 * POOL_CACHE + 2 * MAX_BURST);
  /* What rte_mempool_create does, with the handler named rather than the default. */
  srv.pool = rte_mempool_create_empty(POOL_NAME, (unsigned)n, BUF_SIZE, POOL_CACHE, 0, SOCKET_ID_ANY, 0);
  if (!srv.pool) die("rte_mempool_create_empty failed");
  if (rte_mempool_set_ops_byname(srv.pool, pool_ops, NULL) != 0) {
    fprintf(stderr, "dpdk-client-server: no mempool handler '%s' (POOL_OPS): give ring_mp_mc, ring_mt_rts or ring_mt_hts\n",
            pool_ops);
    exit(2);
  }
  if (rte_mempool_populate_default(srv.pool) < 0) die("rte_mempool_populate_default failed");
  for (uint32_t k = 0; k < clients; ++k) {
    char name[RTE_RING_NAMESIZE];
    snprintf(name, sizeof name, RING_FMT, k);
    srv.rings[k] = rte_ring_create(name, (unsigned)ring_size, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (!srv.rings[k]) die("rte_ring_create failed");
  }
  const struct rte_memzone* mz = rte_memzone_reserve(CONTROL_NAME, sizeof(struct control), SOCKET_ID_ANY, 0);
  if (!mz) die("rte_memzone_reserve failed");
  srv.ctl = mz->addr;
  memset(srv.ctl, 0, sizeof *srv.ctl);
  srv.ctl->clients = clients;
  srv.ctl->ring_size = (uint32_t)ring_size;
  __atomic_store_n(&srv.ctl->magic, CONTROL_MAGIC, __ATOMIC_RELEASE);
  make_flows(seed, clients);
  srv.rng.s = seed;
  printf("server: primary ready (pid %d): pool %s of %llu buffers of %u bytes (handler %s), rings of %llu\n", getpid(),
         POOL_NAME, (unsigned long long)n, BUF_SIZE, pool_ops, (unsigned long long)ring_size);

  /* Wait for every client. */
  uint8_t seen[MAX_CLIENTS] = {0};
  uint32_t attached = 0;
  const double give_up = now_s() + 60;
  while (attached < clients) {
    for (uint32_t k = 0; k < clients; ++k) {
      if (seen[k] || __atomic_load_n(&srv.ctl->slots[k].state, __ATOMIC_ACQUIRE) < S_ATTACHED) continue;
      seen[k] = 1;
      ++attached;
      printf("server: client %u attached (pid %d)\n", k, srv.ctl->slots[k].pid);
    }
    if (attached == clients) break;
    if (now_s() > give_up) die("the clients did not attach within 60 s");
    sleep_ms(1);
  }

  server_generate();

  /* Finish: wait until every client has drained its ring. */
  __atomic_store_n(&srv.ctl->finish, 1, __ATOMIC_RELEASE);
  for (;;) {
    uint32_t waiting = 0;
    for (uint32_t k = 0; k < clients; ++k) {
      const uint32_t s = __atomic_load_n(&srv.ctl->slots[k].state, __ATOMIC_ACQUIRE);
      if (s == S_ATTACHED || s == S_CLAIMING) ++waiting;
    }
    if (waiting == 0) break;
    sleep_ms(1);
  }
  server_publish();

  /* Report. */
  uint64_t rx = 0, bad = 0;
  for (uint32_t k = 0; k < clients; ++k) {
    const struct client_slot* s = &srv.ctl->slots[k];
    printf("server: client %u rx=%llu bad=%llu\n", k, (unsigned long long)s->rx, (unsigned long long)s->bad);
    rx += s->rx;
    bad += s->bad;
  }
  int rc = 0;
  if (rx != srv.tx) {
    fprintf(stderr, "server: error: the clients received %llu packets but %llu were enqueued\n", (unsigned long long)rx,
            (unsigned long long)srv.tx);
    rc = 1;
  }
  if (bad) {
    fprintf(stderr, "server: error: clients reported %llu bad packets\n", (unsigned long long)bad);
    rc = 1;
  }
  rte_mempool_cache_flush(NULL, srv.pool);
  if (rte_mempool_avail_count(srv.pool) != n) {
    fprintf(stderr, "server: error: %u of %llu buffers are not back in the pool\n",
            (unsigned)(n - rte_mempool_avail_count(srv.pool)), (unsigned long long)n);
    rc = 1;
  }
  printf("summary role=server tx=%llu clients=%u drops=%llu\n", (unsigned long long)srv.tx, clients,
         (unsigned long long)srv.drops);
  /* No frees: the secondaries may still be detaching; exiting releases it all. */
  return rc;
}

/* ---- client ---- */

/* mpod's Mempool::contains, on DPDK's layout: in the pool's memory and at an
 * object's start. Like mpod's, a range check and one division. DPDK lays the
 * objects out from each memory chunk's start, but starts again at a page
 * boundary rather than let an object straddle one; so the stride is counted
 * from the chunk's start on its first page and from the page's start after.
 * run_client checks this against every object of the pool before it starts. */
struct chunk {
  uintptr_t addr, end, first_page_end;
};
#define MAX_CHUNKS 64
static struct chunk chunks[MAX_CHUNKS];
static unsigned nchunks;
static uint64_t obj_stride;
static uintptr_t obj_header, page_mask;

static void on_chunk(struct rte_mempool* mp, void* opaque, struct rte_mempool_memhdr* memhdr, unsigned mem_idx) {
  (void)mp;
  (void)opaque;
  (void)mem_idx;
  if (nchunks == MAX_CHUNKS) die("the pool is in too many memory chunks");
  const struct rte_memseg* ms = rte_mem_virt2memseg(memhdr->addr, NULL);
  if (!ms) die("the pool's memory is not in a memseg");
  if (page_mask && page_mask != ms->hugepage_sz - 1) die("the pool's memory has two page sizes");
  page_mask = ms->hugepage_sz - 1;
  const uintptr_t a = (uintptr_t)memhdr->addr;
  chunks[nchunks].addr = a;
  chunks[nchunks].end = a + memhdr->len;
  chunks[nchunks].first_page_end = (a & ~page_mask) + page_mask + 1;
  ++nchunks;
}

static inline int pool_contains(const void* obj) {
  const uintptr_t p = (uintptr_t)obj;
  for (unsigned i = 0; i < nchunks; ++i)
    if (p >= chunks[i].addr && p < chunks[i].end) {
      const uintptr_t from = p < chunks[i].first_page_end ? chunks[i].addr : (p & ~page_mask);
      return p - from >= obj_header && (p - from - obj_header) % obj_stride == 0;
    }
  return 0;
}

static void check_contains(struct rte_mempool* mp, void* opaque, void* obj, unsigned idx) {
  (void)mp;
  (void)idx;
  if (!pool_contains(obj)) ++*(unsigned*)opaque;
}

static int run_client(uint32_t id, uint32_t burst) {
  /* The control block, once the server has made everything. */
  struct control* ctl = NULL;
  const double give_up = now_s() + 5;
  for (;;) {
    const struct rte_memzone* mz = rte_memzone_lookup(CONTROL_NAME);
    if (mz && __atomic_load_n(&((struct control*)mz->addr)->magic, __ATOMIC_ACQUIRE) == CONTROL_MAGIC) {
      ctl = mz->addr;
      break;
    }
    if (now_s() > give_up) die("the server's control block did not appear");
    sleep_ms(5);
  }
  if (id >= ctl->clients) die("client id out of range");
  char name[RTE_RING_NAMESIZE];
  snprintf(name, sizeof name, RING_FMT, id);
  struct rte_ring* ring = rte_ring_lookup(name);
  struct rte_mempool* pool = rte_mempool_lookup(POOL_NAME);
  if (!ring || !pool) die("the server's ring or pool was not found");
  obj_header = pool->header_size;
  obj_stride = pool->header_size + pool->elt_size + pool->trailer_size;
  rte_mempool_mem_iter(pool, on_chunk, NULL);
  unsigned refused = 0;
  rte_mempool_obj_iter(pool, check_contains, &refused);
  if (refused) {
    fprintf(stderr, "dpdk-client-server: %u of the pool's objects fail pool_contains: DPDK's layout changed\n", refused);
    return 1;
  }
  struct client_slot* slot = &ctl->slots[id];
  for (;;) {
    uint32_t st = __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
    if (st == S_ATTACHED) die("client id already attached");
    if ((st == S_FREE || st == S_DONE || st == S_LEFT) &&
        __atomic_compare_exchange_n(&slot->state, &st, S_CLAIMING, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
      break;
    sleep_ms(1);
  }
  slot->pid = getpid();
  gethostname(slot->hostname, sizeof slot->hostname - 1);
  __atomic_store_n(&slot->state, S_ATTACHED, __ATOMIC_RELEASE);
  const uint32_t clients = ctl->clients;
  const uint64_t rx_base = slot->rx;
  printf("client %u: attached (pid %d, lcore %u), receiving from %s\n", id, getpid(), rte_lcore_id(), name);

  void* bufs[MAX_BURST];
  struct backoff backoff = {0, 50};
  int finishing = 0;
  uint64_t rx = 0, bad = 0, last_seq = 0;
  uint32_t min_len = UINT32_MAX, max_len = 0; /* of the good packets, as mpod-mp-client reports them */
  for (;;) {
    const unsigned n = rte_ring_dequeue_burst(ring, bufs, burst, NULL);
    if (n == 0) {
      if (finishing) break;
      if (__atomic_load_n(&ctl->finish, __ATOMIC_ACQUIRE)) {
        finishing = 1;
        continue;
      }
      backoff_idle(&backoff);
      continue;
    }
    backoff_reset(&backoff);
    unsigned keep = 0;
    for (unsigned i = 0; i < n; ++i) {
      if (!pool_contains(bufs[i])) {
        ++bad;
        __atomic_store_n(&slot->bad, bad, __ATOMIC_RELAXED);
        continue;
      }
      if (verify_packet(bufs[i], clients, id, &last_seq, rx + i == 0) != V_OK) {
        ++bad;
        __atomic_store_n(&slot->bad, bad, __ATOMIC_RELAXED);
      } else {
        const uint32_t len = ((const struct packet_header*)bufs[i])->len;
        if (len < min_len) min_len = len;
        if (len > max_len) max_len = len;
      }
      bufs[keep++] = bufs[i];
    }
    if (keep) rte_mempool_put_bulk(pool, bufs, keep);
    rx += n;
    __atomic_store_n(&slot->rx, rx_base + rx, __ATOMIC_RELAXED);
  }
  rte_mempool_cache_flush(NULL, pool);
  __atomic_store_n(&slot->state, S_DONE, __ATOMIC_RELEASE);
  if (min_len <= max_len) printf("client %u: payloads of %u..%u bytes\n", id, min_len, max_len);
  printf("summary role=client id=%u rx=%llu bad=%llu pid=%d\n", id, (unsigned long long)rx, (unsigned long long)bad,
         getpid());
  return bad ? 1 : 0;
}

/* ---- digest: what the server would generate, without EAL ---- */

static int run_digest(uint64_t seed, uint32_t clients, uint64_t packets, uint32_t payload) {
  static uint8_t buf[BUF_SIZE];
  uint64_t per_client[MAX_CLIENTS] = {0};
  uint64_t len_sum = 0, sum = 0;
  make_flows(seed, clients);
  struct rng r = {seed};
  for (uint64_t i = 0; i < packets; ++i) {
    const struct flow* f = &flows[rng_next(&r) % FLOWS];
    fill_packet(buf, &f->tuple, i, payload);
    const struct packet_header* h = (const struct packet_header*)buf;
    ++per_client[f->client];
    len_sum += h->len;
    sum = sum * 31 + h->checksum + flow_hash(&h->flow);
  }
  printf("digest len_sum=%llu sum=%llu clients=", (unsigned long long)len_sum, (unsigned long long)sum);
  for (uint32_t k = 0; k < clients; ++k) printf("%s%llu", k ? "," : "", (unsigned long long)per_client[k]);
  printf("\n");
  return 0;
}

static int payload_ok(uint32_t payload) { return payload == 0 || (payload >= MIN_PAYLOAD && payload <= MAX_PAYLOAD); }

static void usage(void) {
  fprintf(stderr,
          "usage: dpdk-client-server server CLIENTS PACKETS BURST RING_SIZE SEED PAYLOAD POOL_OPS [EAL options]\n"
          "       dpdk-client-server client ID BURST [EAL options]\n"
          "       dpdk-client-server digest SEED CLIENTS PACKETS PAYLOAD\n"
          "PAYLOAD: bytes of every packet's payload, 46..1500, or 0 for mixed lengths\n"
          "POOL_OPS: the pool's mempool handler (ring_mp_mc, DPDK's default; ring_mt_rts; ring_mt_hts)\n");
  exit(2);
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) usage();
  if (strcmp(argv[1], "digest") == 0) {
    if (argc != 6) usage();
    const uint32_t clients = (uint32_t)strtoul(argv[3], NULL, 10);
    const uint32_t payload = (uint32_t)strtoul(argv[5], NULL, 10);
    if (clients < 1 || clients > MAX_CLIENTS || !payload_ok(payload)) usage();
    return run_digest(strtoull(argv[2], NULL, 10), clients, strtoull(argv[4], NULL, 10), payload);
  }
  const int server = strcmp(argv[1], "server") == 0;
  const int app_args = server ? 9 : 4; /* index of the first EAL option: after the role's arguments */
  if ((!server && strcmp(argv[1], "client") != 0) || argc < app_args) usage();
  uint64_t nums[6] = {0};
  for (int i = 2; i < app_args && i < 8; ++i) nums[i - 2] = strtoull(argv[i], NULL, 10);
  const char* pool_ops = server ? argv[8] : NULL;
  argv[app_args - 1] = argv[0]; /* EAL sees: prog, EAL options */
  if (rte_eal_init(argc - (app_args - 1), argv + (app_args - 1)) < 0) die("rte_eal_init failed");
  int rc;
  if (server) {
    if (nums[0] < 1 || nums[0] > MAX_CLIENTS || nums[2] < 1 || nums[2] > MAX_BURST || nums[3] < 1 ||
        !payload_ok((uint32_t)nums[5]))
      usage();
    rc = run_server((uint32_t)nums[0], nums[1], nums[2], nums[3], nums[4], (uint32_t)nums[5], pool_ops);
  } else {
    if (nums[0] >= MAX_CLIENTS || nums[1] < 1 || nums[1] > MAX_BURST) usage();
    rc = run_client((uint32_t)nums[0], (uint32_t)nums[1]);
  }
  rte_eal_cleanup();
  return rc;
}
