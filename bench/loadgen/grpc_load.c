/*
 * grpc_load: unary gRPC load over one cleartext HTTP/2 connection, built on libnghttp2, so that
 * the load generator costs little CPU and adds little latency of its own.
 *
 *   grpc_load HOST PORT PATH BODY_FILE --seconds S (--rate R | --inflight N) [--warmup N]
 *
 * BODY_FILE holds one or more gRPC-framed messages back to back (5-byte prefix, then the message);
 * calls cycle through them. --rate starts a call every 1/R seconds whatever the earlier calls are
 * doing (open loop); --inflight keeps N calls outstanding (closed loop). A call succeeds when its
 * response carries grpc-status 0. Prints one JSON object on stdout: counts, the achieved rate, and
 * latency percentiles in microseconds measured from when each call was due (open loop: includes
 * any delay of the generator itself) and from when it was written.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  const uint8_t *data;
  size_t len;
} body_t;

typedef struct call {
  double due_us;
  double sent_us;
  int grpc_status; /* -1 until seen */
  size_t off;
  const body_t *body;
  struct call *next_free;
} call_t;

typedef struct {
  double *v;
  size_t n, cap;
} samples_t;

static int fd = -1;
static nghttp2_session *session;
static body_t *bodies;
static size_t nbodies;
static size_t body_ix;
static call_t *free_calls;
static long inflight, ok_calls, failed_calls, warmup_left;
static int measuring;
static samples_t from_due, from_sent, lateness;
static int want_more = 1;
static long closed_inflight;
static double closed_deadline;
static const char *g_path, *g_authority;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "grpc_load: %s: %s\n", what, detail);
  exit(2);
}

static void push(samples_t *s, double x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 65536;
    s->v = realloc(s->v, s->cap * sizeof(double));
    if (!s->v) die("memory", "out of memory");
  }
  s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const samples_t *s, double p) {
  if (s->n == 0) return 0;
  size_t i = (size_t)(p * (double)s->n);
  if (i >= s->n) i = s->n - 1;
  return s->v[i];
}

static call_t *new_call(void) {
  call_t *c = free_calls;
  if (c) {
    free_calls = c->next_free;
  } else {
    c = malloc(sizeof(call_t));
    if (!c) die("memory", "out of memory");
  }
  memset(c, 0, sizeof(*c));
  c->grpc_status = -1;
  return c;
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *u) {
  (void)s, (void)flags, (void)u;
  ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return NGHTTP2_ERR_WOULDBLOCK;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return n;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *u) {
  (void)s, (void)id, (void)u;
  call_t *c = src->ptr;
  size_t left = c->body->len - c->off;
  size_t n = left < len ? left : len;
  memcpy(buf, c->body->data + c->off, n);
  c->off += n;
  if (c->off == c->body->len) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u) {
  (void)flags, (void)u;
  if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    call_t *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (c) {
      char tmp[16];
      size_t k = vlen < sizeof(tmp) - 1 ? vlen : sizeof(tmp) - 1;
      memcpy(tmp, value, k);
      tmp[k] = 0;
      c->grpc_status = atoi(tmp);
    }
  }
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *u) {
  (void)s, (void)flags, (void)id, (void)data, (void)len, (void)u;
  return 0;
}

static void submit(double due);

static int on_close(nghttp2_session *s, int32_t id, uint32_t err, void *u) {
  (void)u;
  call_t *c = nghttp2_session_get_stream_user_data(s, id);
  if (!c) return 0;
  double t = now_us();
  inflight--;
  if (warmup_left > 0) {
    warmup_left--;
  } else if (measuring) {
    if (err == 0 && c->grpc_status == 0) {
      ok_calls++;
      push(&from_due, t - c->due_us);
      push(&from_sent, t - c->sent_us);
    } else {
      failed_calls++;
      if (failed_calls == 1)
        fprintf(stderr, "grpc_load: call failed: grpc-status %d, stream error %u\n", c->grpc_status, err);
    }
  }
  c->next_free = free_calls;
  free_calls = c;
  if (closed_inflight > 0 && (warmup_left > 0 || t < closed_deadline)) submit(t);
  return 0;
}

static void submit(double due) {
  call_t *c = new_call();
  c->body = &bodies[body_ix++ % nbodies];
  c->due_us = due;
  nghttp2_nv hdrs[] = {
      {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":authority", (uint8_t *)g_authority, 10, strlen(g_authority), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)":path", (uint8_t *)g_path, 5, strlen(g_path), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_data_provider dp = {.source = {.ptr = c}, .read_callback = read_body};
  int32_t id = nghttp2_submit_request(session, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp, c);
  if (id < 0) die("submit", nghttp2_strerror(id));
  inflight++;
  c->sent_us = now_us();
  if (measuring && warmup_left == 0) push(&lateness, c->sent_us - due);
}

static void pump(int timeout_us) {
  int rv = nghttp2_session_send(session);
  if (rv != 0) die("send", nghttp2_strerror(rv));
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (nghttp2_session_want_write(session)) p.events |= POLLOUT;
  struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = (long)(timeout_us % 1000000) * 1000};
  if (ppoll(&p, 1, &ts, NULL) < 0 && errno != EINTR) die("poll", strerror(errno));
  if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
    uint8_t buf[65536];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n == 0) die("connection", "closed by the server");
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        die("recv", strerror(errno));
      }
      ssize_t m = nghttp2_session_mem_recv(session, buf, (size_t)n);
      if (m < 0) die("recv", nghttp2_strerror((int)m));
    }
  }
  rv = nghttp2_session_send(session);
  if (rv != 0) die("send", nghttp2_strerror(rv));
}

static void load_bodies(const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) die(file, strerror(errno));
  static uint8_t *all;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (size <= 0) die(file, "empty");
  all = malloc((size_t)size);
  if (!all || fread(all, 1, (size_t)size, f) != (size_t)size) die(file, "cannot read");
  fclose(f);
  size_t off = 0;
  while (off < (size_t)size) {
    if ((size_t)size - off < 5) die(file, "truncated gRPC frame prefix");
    uint32_t len = ((uint32_t)all[off + 1] << 24) | ((uint32_t)all[off + 2] << 16) | ((uint32_t)all[off + 3] << 8) |
                   all[off + 4];
    if ((size_t)size - off - 5 < len) die(file, "gRPC frame longer than the file");
    bodies = realloc(bodies, (nbodies + 1) * sizeof(body_t));
    bodies[nbodies].data = all + off;
    bodies[nbodies].len = 5 + (size_t)len;
    nbodies++;
    off += 5 + (size_t)len;
  }
}

static void connect_to(const char *host, const char *port) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
  int rv = getaddrinfo(host, port, &hints, &res);
  if (rv != 0) die(host, gai_strerror(rv));
  fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) die("connect", strerror(errno));
  freeaddrinfo(res);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void print_samples(const char *name, samples_t *s, int last) {
  qsort(s->v, s->n, sizeof(double), cmp_double);
  printf("\"%s\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f}%s", name, pct(s, 0.5),
         pct(s, 0.9), pct(s, 0.99), pct(s, 0.999), s->n ? s->v[s->n - 1] : 0.0, last ? "" : ",");
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: grpc_load HOST PORT PATH BODY_FILE --seconds S (--rate R | --inflight N) [--warmup N]\n");
    return 2;
  }
  double seconds = 5, rate = 0;
  long inflight_target = 0, warmup = 1000;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--rate") == 0) rate = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--inflight") == 0) inflight_target = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--warmup") == 0) warmup = atol(argv[i + 1]);
    else die("unknown option", argv[i]);
  }
  if ((rate > 0) == (inflight_target > 0)) die("options", "give exactly one of --rate and --inflight");
  if (seconds <= 0 || seconds > 600) die("options", "--seconds must be in (0, 600]");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  load_bodies(argv[4]);
  g_path = argv[3];
  static char authority[300];
  snprintf(authority, sizeof(authority), "%s:%s", argv[1], argv[2]);
  g_authority = authority;
  connect_to(argv[1], argv[2]);

  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  nghttp2_session_client_new(&session, cbs, NULL);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (1U << 24)},
                                 {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, 1 << 26);

  /* Warm-up: calls one at a time, not measured. */
  warmup_left = warmup;
  measuring = 1;
  while (warmup_left > 0) {
    if (inflight == 0) submit(now_us());
    pump(100000);
  }

  double start = now_us();
  double end = start + seconds * 1e6;
  long sent = 0;
  if (rate > 0) {
    long total = (long)(rate * seconds);
    double interval = 1e6 / rate;
    while (sent < total) {
      double t = now_us();
      double due = start + (double)sent * interval;
      while (sent < total && due <= t) {
        submit(due);
        sent++;
        due = start + (double)sent * interval;
      }
      double wait = due - now_us();
      pump(sent < total ? (wait > 0 ? (int)wait : 0) : 0);
    }
  } else {
    closed_inflight = inflight_target;
    closed_deadline = end;
    for (long i = 0; i < inflight_target; i++) submit(now_us());
    while (now_us() < end) pump(100000);
  }
  want_more = 0;
  double drain_until = now_us() + 5e6;
  while (inflight > 0 && now_us() < drain_until) pump(10000);
  double elapsed = (now_us() - start) / 1e6;
  if (rate <= 0) elapsed = seconds;

  printf("{\"ok\":%ld,\"failed\":%ld,\"unfinished\":%ld,\"seconds\":%.3f,\"callsPerSec\":%.1f,", ok_calls,
         failed_calls, inflight, elapsed, (double)ok_calls / elapsed);
  printf("\"latencyUs\":{");
  print_samples("fromDue", &from_due, 0);
  print_samples("fromSent", &from_sent, 1);
  printf("},");
  print_samples("latenessUs", &lateness, 1);
  printf("}\n");
  nghttp2_session_del(session);
  close(fd);
  return failed_calls > 0 || inflight > 0 ? 1 : 0;
}
