/*
 * xds_load: the simulated Envoy sidecars of bench/xds_client.ts in C on libnghttp2, so that the
 * load generator of bench/ha.ts costs little CPU and the machine shows the replicas' own speed.
 *
 * Same wire behaviour as bench/xds_client.ts (read its header for the details): one ADS stream
 * (State of the World) per sidecar, each with its own node id, IP and NAMESPACE/LABELS metadata,
 * many streams per cleartext HTTP/2 connection; CDS and LDS wildcard first (the node only in the
 * first request), then EDS for the EDS clusters named in CDS and RDS for the route names in LDS;
 * every response ACKed with its version and nonce, restating the subscribed names; a changed CDS
 * (LDS) first (re)subscribes EDS (RDS), then ACKs. Names found in a CDS or LDS response are cached
 * by (type, version, size). Protobuf is read and written by hand, for the needed fields only.
 *
 * Failover mode (start with `addrs`): sidecar I starts on addrs[I mod R] and walks its own order of
 * the others (every other sidecar the other way round); a broken stream waits a random time below
 * `jitterMs`, then opens a new stream to the next address, sharing a connection with up to
 * `perConn` others, and subscribes afresh.
 *
 * Single-threaded: one poll loop over stdin, the connections and a timer heap.
 *
 * Protocol: the JSON-lines commands and events of bench/xds_client.ts (start, arm, failover,
 * stats, status, stop), with the same fields; times are epoch milliseconds with fractions. A line
 * it does not understand ends it with a message on stderr and exit status 2.
 *
 *   build: cc -O2 -Wall -o xds_load xds_load.c -lnghttp2
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CDS, EDS, LDS, RDS, NTYPES };
static const char *const SHORT[NTYPES] = {"CDS", "EDS", "LDS", "RDS"};
static const char *const TYPE_URL[NTYPES] = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
};
static const char HCM[] = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
static const char ADS_PATH[] = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
#define MAX_ERRORS 20
#define MAX_ADDRS 64

static void die(const char *what, const char *detail) {
  fprintf(stderr, "xds_load: %s: %s\n", what, detail);
  exit(2);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ byte buffers and strings */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more) cap *= 2;
  b->p = realloc(b->p, cap);
  if (!b->p) die("memory", "out of memory");
  b->cap = cap;
}

static void buf_put(buf_t *b, const void *d, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void buf_free(buf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

static void buf_varint(buf_t *b, uint64_t n) {
  buf_reserve(b, 10);
  while (n > 127) {
    b->p[b->len++] = (uint8_t)((n & 127) | 128);
    n >>= 7;
  }
  b->p[b->len++] = (uint8_t)n;
}

/* A length-delimited field: tag, length, payload. */
static void buf_field(buf_t *b, uint32_t no, const void *d, size_t n) {
  buf_varint(b, ((uint64_t)no << 3) | 2);
  buf_varint(b, n);
  buf_put(b, d, n);
}

static void buf_strfield(buf_t *b, uint32_t no, const char *s) { buf_field(b, no, s, strlen(s)); }

/* An owned byte string (versions, nonces); `set` says whether it holds a value at all. */
typedef struct {
  char *p;
  uint32_t len;
  int set;
} str_t;

static void str_assign(str_t *s, const uint8_t *d, size_t n) {
  if (!s->p || s->len < n) {
    s->p = realloc(s->p, n ? n : 1);
    if (!s->p) die("memory", "out of memory");
  }
  memcpy(s->p, d, n);
  s->len = (uint32_t)n;
  s->set = 1;
}

static int str_eq(const str_t *s, const uint8_t *d, size_t n) {
  return s->set && s->len == n && memcmp(s->p, d, n) == 0;
}

static void str_clear(str_t *s) {
  free(s->p);
  s->p = NULL;
  s->len = 0;
  s->set = 0;
}

/* ------------------------------------------------------------------ protobuf, by hand */

typedef struct {
  const uint8_t *p, *end;
} pb_t;

typedef struct {
  uint32_t no;
  uint64_t v;          /* varint value */
  const uint8_t *s;    /* length-delimited value */
  size_t n;
} pbf_t;

static int pb_varint(pb_t *r, uint64_t *out) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t c = *r->p++;
    x |= (uint64_t)(c & 127) << shift;
    if (c < 128) {
      *out = x;
      return 1;
    }
  }
  return 0;
}

/* The next field: 1, 0 at the end, -1 when malformed. Fixed-width fields are skipped. */
static int pb_next(pb_t *r, pbf_t *f) {
  for (;;) {
    if (r->p >= r->end) return 0;
    uint64_t tag, len;
    if (!pb_varint(r, &tag)) return -1;
    f->no = (uint32_t)(tag >> 3);
    switch (tag & 7) {
    case 0:
      if (!pb_varint(r, &f->v)) return -1;
      f->s = NULL, f->n = 0;
      return 1;
    case 1:
      if (r->end - r->p < 8) return -1;
      r->p += 8;
      continue;
    case 2:
      if (!pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return -1;
      f->s = r->p, f->n = (size_t)len, f->v = 0;
      r->p += len;
      return 1;
    case 5:
      if (r->end - r->p < 4) return -1;
      r->p += 4;
      continue;
    default:
      return -1;
    }
  }
}

static pb_t pb(const uint8_t *s, size_t n) { return (pb_t){s, s + n}; }

/* A set of names, sorted, interned: equal sets share one pointer. */
typedef struct names {
  int count;
  char *key; /* the names joined by NUL */
  size_t key_len;
  buf_t enc; /* each name as DiscoveryRequest.resource_names (field 3) */
  struct names *next;
} names_t;

static names_t EMPTY_NAMES;
static names_t *interned;

typedef struct {
  const uint8_t *s;
  size_t n;
} span_t;

static int span_cmp(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  size_t m = x->n < y->n ? x->n : y->n;
  int c = memcmp(x->s, y->s, m);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

typedef struct {
  span_t *v;
  size_t n, cap;
} spans_t;

static void spans_add(spans_t *a, const uint8_t *s, size_t n) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = realloc(a->v, a->cap * sizeof(span_t));
    if (!a->v) die("memory", "out of memory");
  }
  a->v[a->n++] = (span_t){s, n};
}

/* Sorts and deduplicates `a`, returns the interned set. */
static names_t *intern(spans_t *a) {
  if (a->n == 0) return &EMPTY_NAMES;
  qsort(a->v, a->n, sizeof(span_t), span_cmp);
  buf_t key = {0};
  size_t k = 0;
  for (size_t i = 0; i < a->n; i++) {
    if (i > 0 && span_cmp(&a->v[i], &a->v[k - 1]) == 0) continue;
    a->v[k++] = a->v[i];
  }
  for (size_t i = 0; i < k; i++) {
    if (i) buf_put(&key, "", 1);
    buf_put(&key, a->v[i].s, a->v[i].n);
  }
  for (names_t *x = interned; x; x = x->next) {
    if (x->key_len == key.len && memcmp(x->key, key.p, key.len) == 0) {
      buf_free(&key);
      return x;
    }
  }
  names_t *x = calloc(1, sizeof(names_t));
  if (!x) die("memory", "out of memory");
  x->count = (int)k;
  x->key = (char *)key.p;
  x->key_len = key.len;
  for (size_t i = 0; i < k; i++) buf_field(&x->enc, 3, a->v[i].s, a->v[i].n);
  x->next = interned;
  interned = x;
  return x;
}

/* google.protobuf.Any: type_url = 1, value = 2. */
static int any_of(const uint8_t *s, size_t n, span_t *url, span_t *value) {
  pb_t r = pb(s, n);
  pbf_t f;
  int rv;
  *url = (span_t){NULL, 0};
  *value = (span_t){NULL, 0};
  while ((rv = pb_next(&r, &f)) > 0) {
    if (f.no == 1 && f.s) *url = (span_t){f.s, f.n};
    else if (f.no == 2 && f.s) *value = (span_t){f.s, f.n};
  }
  return rv;
}

/* The EDS service name of a Cluster (type = 2 is EDS = 3; eds_cluster_config = 3 -> service_name = 2). */
static int eds_name_of(const uint8_t *s, size_t n, spans_t *out) {
  pb_t r = pb(s, n);
  pbf_t f;
  int rv;
  span_t name = {NULL, 0}, service = {NULL, 0};
  uint64_t type = 0;
  while ((rv = pb_next(&r, &f)) > 0) {
    if (f.no == 1 && f.s) name = (span_t){f.s, f.n};
    else if (f.no == 2 && !f.s) type = f.v;
    else if (f.no == 3 && f.s) {
      pb_t r2 = pb(f.s, f.n);
      pbf_t g;
      int rv2;
      while ((rv2 = pb_next(&r2, &g)) > 0) {
        if (g.no == 2 && g.s) service = (span_t){g.s, g.n};
      }
      if (rv2 < 0) return -1;
    }
  }
  if (rv < 0) return -1;
  if (type == 3) {
    if (service.n > 0) spans_add(out, service.s, service.n);
    else spans_add(out, name.s ? name.s : (const uint8_t *)"", name.n);
  }
  return 0;
}

/* A callback of each_sub: reads one submessage, adding what it finds to out; -1 when malformed. */
typedef int (*sub_fn)(const uint8_t *s, size_t n, spans_t *out);

/* Calls fn on every length-delimited field numbered no of a message: 0, or -1 when malformed. */
static int each_sub(const uint8_t *s, size_t n, uint32_t no, sub_fn fn, spans_t *out) {
  pb_t r = pb(s, n);
  pbf_t f;
  int rv;
  while ((rv = pb_next(&r, &f)) > 0) {
    if (f.no == no && f.s && fn(f.s, f.n, out) < 0) return -1;
  }
  return rv;
}

static int add_span(const uint8_t *s, size_t n, spans_t *out) {
  spans_add(out, s, n);
  return 0;
}

/* Rds.route_config_name = 2. */
static int rds_of_rds(const uint8_t *s, size_t n, spans_t *out) {
  return each_sub(s, n, 2, add_span, out);
}

/* RDS names in an Any holding an HttpConnectionManager (rds = 3 -> route_config_name = 2). */
static int rds_of_any(const uint8_t *s, size_t n, spans_t *out) {
  span_t url, value;
  if (any_of(s, n, &url, &value) < 0) return -1;
  size_t h = sizeof(HCM) - 1;
  if (url.n < h || memcmp(url.s + url.n - h, HCM, h) != 0) return 0;
  return each_sub(value.s, value.n, 3, rds_of_rds, out);
}

/* RDS names of a Filter: typed_config = 4; of an ApiListener: api_listener = 1. */
static int rds_of_filter(const uint8_t *s, size_t n, spans_t *out) {
  return each_sub(s, n, 4, rds_of_any, out);
}

static int rds_of_api(const uint8_t *s, size_t n, spans_t *out) {
  return each_sub(s, n, 1, rds_of_any, out);
}

/* RDS names of a FilterChain: filters = 3. */
static int rds_of_chain(const uint8_t *s, size_t n, spans_t *out) {
  return each_sub(s, n, 3, rds_of_filter, out);
}

/* RDS names of a Listener: filter_chains = 3, default_filter_chain = 25, api_listener = 19. */
static int rds_names_of(const uint8_t *s, size_t n, spans_t *out) {
  pb_t r = pb(s, n);
  pbf_t f;
  int rv;
  while ((rv = pb_next(&r, &f)) > 0) {
    if (!f.s) continue;
    if ((f.no == 3 || f.no == 25) && rds_of_chain(f.s, f.n, out) < 0) return -1;
    if (f.no == 19 && rds_of_api(f.s, f.n, out) < 0) return -1;
  }
  return rv;
}

/* A DiscoveryResponse's scalars: version_info = 1, type_url = 4, nonce = 5 (resources = 2 read later). */
typedef struct {
  span_t version, type_url, nonce;
} response_t;

static int decode_response(const uint8_t *s, size_t n, response_t *r) {
  pb_t rd = pb(s, n);
  pbf_t f;
  int rv;
  memset(r, 0, sizeof(*r));
  while ((rv = pb_next(&rd, &f)) > 0) {
    if (!f.s) continue;
    if (f.no == 1) r->version = (span_t){f.s, f.n};
    else if (f.no == 4) r->type_url = (span_t){f.s, f.n};
    else if (f.no == 5) r->nonce = (span_t){f.s, f.n};
  }
  return rv;
}

/* Names a CDS or LDS response leads to (EDS or RDS), cached by type, version and size. */
typedef struct cached {
  int type;
  size_t size;
  str_t version;
  names_t *names;
  struct cached *next;
} cached_t;

static cached_t *names_cache;

static names_t *names_of(int type, const response_t *r, const uint8_t *s, size_t n) {
  for (cached_t *c = names_cache; c; c = c->next) {
    if (c->type == type && c->size == n && str_eq(&c->version, r->version.s, r->version.n)) return c->names;
  }
  spans_t found = {0};
  pb_t rd = pb(s, n);
  pbf_t f;
  int rv;
  while ((rv = pb_next(&rd, &f)) > 0) {
    if (f.no != 2 || !f.s) continue;
    span_t url, value;
    if (any_of(f.s, f.n, &url, &value) < 0) return NULL;
    if (!value.s) value.s = (const uint8_t *)"";
    if ((type == CDS ? eds_name_of(value.s, value.n, &found) : rds_names_of(value.s, value.n, &found)) < 0) {
      free(found.v);
      return NULL;
    }
  }
  if (rv < 0) {
    free(found.v);
    return NULL;
  }
  names_t *names = intern(&found);
  free(found.v);
  cached_t *c = calloc(1, sizeof(cached_t));
  if (!c) die("memory", "out of memory");
  c->type = type;
  c->size = n;
  str_assign(&c->version, r->version.s, r->version.n);
  c->names = names;
  c->next = names_cache;
  names_cache = c;
  return names;
}

/* ------------------------------------------------------------------ output */

static void json_str(buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_put(b, e, 2);
    } else if (c < 0x20) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_put(b, e, 6);
    } else {
      buf_put(b, &c, 1);
    }
  }
  buf_put(b, "\"", 1);
}

static void json_printf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char tmp[512];
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n > 0) buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Writes one event line (the buffer holds the JSON object) and clears the buffer. */
static void emit(buf_t *b) {
  buf_put(b, "\n", 1);
  fwrite(b->p, 1, b->len, stdout);
  fflush(stdout);
  b->len = 0;
}

static void base64(buf_t *b, const uint8_t *d, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n) v |= d[i + 2];
    char o[4] = {t[(v >> 18) & 63], t[(v >> 12) & 63], i + 1 < n ? t[(v >> 6) & 63] : '=',
                 i + 2 < n ? t[v & 63] : '='};
    buf_put(b, o, 4);
  }
}

/* ------------------------------------------------------------------ state */

typedef struct {
  str_t version, nonce; /* the last response's (what an ACK or a re-subscription carries) */
  names_t *names;
  int subscribed;
  str_t acked;
} sub_t;

struct conn;

typedef struct {
  int index;
  buf_t node; /* DiscoveryRequest.node (field 2), encoded */
  uint8_t order[MAX_ADDRS];
  int at;
  struct conn *conn;
  int32_t stream_id;
  buf_t out; /* requests not yet taken by the session */
  size_t out_off;
  int deferred;
  buf_t in; /* an incomplete response */
  int opened, full, closed, converged, pending;
  sub_t subs[NTYPES];
  str_t baseline;
} sidecar_t;

typedef struct conn {
  int fd, addr, connecting, dead, goaway, streams;
  nghttp2_session *s;
  buf_t w;
  size_t w_off;
} conn_t;

static struct {
  char host[256], port[16], text[300];
  struct sockaddr_storage sa;
  socklen_t salen;
} addrs[MAX_ADDRS];
static int naddrs;

static sidecar_t *sidecars;
static int nsidecars;
static conn_t **conns;
static int nconns, conns_cap;
static conn_t *pools[MAX_ADDRS];
static int failover_mode, per_conn;
static uint32_t window, conn_window;
static double jitter_ms = 500;
static int opened, full, closed;
static double t_first_full;
static char *errors[MAX_ERRORS];
static int nerrors;
static buf_t ev;

static struct {
  int on;
  char id[128];
  int type, any_mode, converged;
  double t_first_recv, t_last_ack;
  long responses[NTYPES];
  double bytes;
  buf_t frames; /* stream 0's gRPC frames, back to back */
  size_t *frame_ends;
  size_t nframes;
} arm;

static struct {
  int on;
  char id[128];
  int addr; /* -1: an address no sidecar has */
  int pending, moved;
  double t_first_break, t_last_full;
} fo;

static void note_error(const char *fmt, ...) {
  if (nerrors >= MAX_ERRORS) return;
  va_list ap;
  va_start(ap, fmt);
  char tmp[400];
  vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  errors[nerrors++] = strdup(tmp);
}

/* ------------------------------------------------------------------ timers (a binary heap) */

typedef struct {
  double due;
  int sc;
} timer_t_;

static timer_t_ *timers;
static int ntimers, timers_cap;

static void timer_add(double due, int sc) {
  if (ntimers == timers_cap) {
    timers_cap = timers_cap ? timers_cap * 2 : 1024;
    timers = realloc(timers, (size_t)timers_cap * sizeof(timer_t_));
    if (!timers) die("memory", "out of memory");
  }
  int i = ntimers++;
  while (i > 0 && timers[(i - 1) / 2].due > due) {
    timers[i] = timers[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  timers[i] = (timer_t_){due, sc};
}

static timer_t_ timer_pop(void) {
  timer_t_ top = timers[0], last = timers[--ntimers];
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= ntimers) break;
    if (c + 1 < ntimers && timers[c + 1].due < timers[c].due) c++;
    if (timers[c].due >= last.due) break;
    timers[i] = timers[c];
    i = c;
  }
  if (ntimers > 0) timers[i] = last;
  return top;
}

/* ------------------------------------------------------------------ requests */

/* Queues bytes on the sidecar's stream and wakes the stream if it was waiting for data. */
static void stream_write(sidecar_t *sc, const buf_t *msg) {
  if (sc->closed) return;
  buf_put(&sc->out, msg->p, msg->len);
  if (sc->deferred) {
    sc->deferred = 0;
    nghttp2_session_resume_data(sc->conn->s, sc->stream_id);
  }
}

/* One gRPC-framed DiscoveryRequest: version_info 1, node 2, resource_names 3, type_url 4, nonce 5. */
static void send_request(sidecar_t *sc, int type, const str_t *version, const str_t *nonce,
                         const names_t *names, const buf_t *node) {
  static buf_t m;
  m.len = 0;
  buf_put(&m, "\0\0\0\0\0", 5);
  if (version && version->set && version->len) buf_field(&m, 1, version->p, version->len);
  if (node) buf_put(&m, node->p, node->len);
  if (names) buf_put(&m, names->enc.p, names->enc.len);
  buf_strfield(&m, 4, TYPE_URL[type]);
  if (nonce && nonce->set && nonce->len) buf_field(&m, 5, nonce->p, nonce->len);
  uint32_t len = (uint32_t)(m.len - 5);
  m.p[1] = (uint8_t)(len >> 24), m.p[2] = (uint8_t)(len >> 16), m.p[3] = (uint8_t)(len >> 8), m.p[4] = (uint8_t)len;
  stream_write(sc, &m);
}

/* ------------------------------------------------------------------ progress */

static void failover_done(void) {
  int *count = calloc((size_t)naddrs, sizeof(int));
  int *seen = calloc((size_t)naddrs, sizeof(int));
  int nseen = 0;
  if (!count || !seen) die("memory", "out of memory");
  for (int i = 0; i < nsidecars; i++) {
    int a = sidecars[i].order[sidecars[i].at];
    if (count[a]++ == 0) seen[nseen++] = a;
  }
  json_printf(&ev, "{\"ev\":\"failover\",\"id\":");
  json_str(&ev, fo.id, strlen(fo.id));
  json_printf(&ev, ",\"moved\":%d,\"tFirstBreak\":%.3f,\"tLastFull\":%.3f,\"byAddr\":{", fo.moved,
              fo.t_first_break, fo.t_last_full);
  for (int k = 0; k < nseen; k++) {
    if (k) buf_put(&ev, ",", 1);
    json_str(&ev, addrs[seen[k]].text, strlen(addrs[seen[k]].text));
    json_printf(&ev, ":%d", count[seen[k]]);
  }
  json_printf(&ev, "}}");
  emit(&ev);
  free(count);
  free(seen);
  fo.on = 0;
}

static void check_full(sidecar_t *sc) {
  if (sc->full) return;
  sub_t *s = sc->subs;
  if (!s[CDS].acked.set || !s[LDS].acked.set) return;
  if (s[EDS].names->count > 0 && !s[EDS].acked.set) return;
  if (s[RDS].names->count > 0 && !s[RDS].acked.set) return;
  sc->full = 1;
  if (++full == 1) t_first_full = now_ms();
  if (full == nsidecars && t_first_full != -1) {
    json_printf(&ev, "{\"ev\":\"full\",\"t\":%.3f,\"tFirst\":%.3f}", now_ms(), t_first_full);
    emit(&ev);
    /* Reported once: later a stream that fails over becomes full again. */
    t_first_full = -1;
  }
  if (fo.on && sc->order[sc->at] != fo.addr && sc->pending) {
    sc->pending = 0;
    fo.pending--;
    fo.moved++;
    fo.t_last_full = now_ms();
    if (fo.pending == 0) failover_done();
  }
}

static void acked(sidecar_t *sc, int type, const span_t *version) {
  str_assign(&sc->subs[type].acked, version->s, version->n);
  check_full(sc);
  if (!arm.on || arm.type != type || sc->converged) return;
  if (!arm.any_mode && str_eq(&sc->baseline, version->s, version->n)) return;
  sc->converged = 1;
  arm.t_last_ack = now_ms();
  if (++arm.converged == nsidecars) {
    json_printf(&ev, "{\"ev\":\"converged\",\"id\":");
    json_str(&ev, arm.id, strlen(arm.id));
    json_printf(&ev, ",\"tFirstRecv\":%.3f,\"tLastAck\":%.3f}", arm.t_first_recv, arm.t_last_ack);
    emit(&ev);
  }
}

static int type_of(const span_t *url) {
  for (int t = 0; t < NTYPES; t++) {
    if (strlen(TYPE_URL[t]) == url->n && memcmp(TYPE_URL[t], url->s, url->n) == 0) return t;
  }
  return -1;
}

/* One DiscoveryResponse (b[0, n), after its 5-byte prefix). */
static void on_message(sidecar_t *sc, const uint8_t *b, size_t n) {
  response_t r;
  if (decode_response(b, n, &r) < 0) {
    note_error("stream %d: malformed DiscoveryResponse (%zu bytes)", sc->index, n);
    return;
  }
  int type = type_of(&r.type_url);
  if (type < 0) {
    note_error("stream %d: response of unexpected type %.*s", sc->index, (int)r.type_url.n, r.type_url.s);
    return;
  }
  if (arm.on) {
    arm.responses[type]++;
    arm.bytes += (double)n + 5;
    if (sc == &sidecars[0]) {
      buf_put(&arm.frames, b - 5, n + 5);
      arm.frame_ends = realloc(arm.frame_ends, (arm.nframes + 1) * sizeof(size_t));
      if (!arm.frame_ends) die("memory", "out of memory");
      arm.frame_ends[arm.nframes++] = arm.frames.len;
    }
    if (arm.type == type && arm.t_first_recv == 0 &&
        (arm.any_mode || !str_eq(&sc->baseline, r.version.s, r.version.n))) {
      arm.t_first_recv = now_ms();
    }
  }
  sub_t *st = &sc->subs[type];
  str_assign(&st->version, r.version.s, r.version.n);
  str_assign(&st->nonce, r.nonce.s, r.nonce.n);
  if (type == CDS || type == LDS) {
    int dt = type == CDS ? EDS : RDS;
    sub_t *dep = &sc->subs[dt];
    names_t *found = names_of(type, &r, b, n);
    if (!found) {
      note_error("stream %d: malformed %s resources", sc->index, SHORT[type]);
      found = &EMPTY_NAMES;
    }
    if (found != dep->names && (found->count > 0 || dep->subscribed)) {
      dep->names = found;
      dep->subscribed = 1;
      send_request(sc, dt, &dep->version, &dep->nonce, dep->names, NULL);
    }
    send_request(sc, type, &st->version, &st->nonce, NULL, NULL);
  } else {
    send_request(sc, type, &st->version, &st->nonce, st->names, NULL);
  }
  acked(sc, type, &r.version);
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Handles every complete gRPC message in d[0, n); returns the bytes consumed. */
static size_t on_messages(sidecar_t *sc, const uint8_t *d, size_t n) {
  size_t p = 0;
  while (n - p >= 5) {
    if (d[p] != 0) {
      note_error("stream %d: compressed gRPC message not handled", sc->index);
      return n;
    }
    size_t len = be32(d + p + 1);
    if (n - p - 5 < len) break;
    on_message(sc, d + p + 5, len);
    p += 5 + len;
  }
  return p;
}

static void on_data(sidecar_t *sc, const uint8_t *d, size_t n) {
  if (sc->in.len == 0) {
    size_t used = on_messages(sc, d, n);
    if (used < n) buf_put(&sc->in, d + used, n - used);
    return;
  }
  /* A large message arrives in many DATA frames: gather them until it is complete. */
  buf_put(&sc->in, d, n);
  if (sc->in.len < 5 || sc->in.len < 5 + (size_t)be32(sc->in.p + 1)) return;
  size_t used = on_messages(sc, sc->in.p, sc->in.len);
  memmove(sc->in.p, sc->in.p + used, sc->in.len - used);
  sc->in.len -= used;
  if (sc->in.len == 0 && sc->in.cap > 65536) buf_free(&sc->in);
}

/* ------------------------------------------------------------------ connections and streams */

static void reset_subs(sidecar_t *sc) {
  for (int t = 0; t < NTYPES; t++) {
    sub_t *s = &sc->subs[t];
    str_clear(&s->version);
    str_clear(&s->nonce);
    str_clear(&s->acked);
    s->names = &EMPTY_NAMES;
    s->subscribed = 0;
  }
}

/* After a break: a new stream to the sidecar's next address, after a random wait below the jitter. */
static void reconnect(sidecar_t *sc) {
  if (sc->full) sc->full = 0, full--;
  if (sc->opened) sc->opened = 0, opened--;
  if (fo.on && sc->order[sc->at] == fo.addr && sc->pending && fo.t_first_break == 0) fo.t_first_break = now_ms();
  sc->at = (sc->at + 1) % naddrs;
  reset_subs(sc);
  buf_free(&sc->in);
  timer_add(now_ms() + drand48() * jitter_ms, (int)(sc - sidecars));
}

static void stream_end(sidecar_t *sc, const char *why) {
  if (sc->closed) return;
  sc->closed = 1;
  sc->out.len = sc->out_off = 0;
  sc->deferred = 0;
  if (failover_mode) {
    reconnect(sc);
    return;
  }
  closed++;
  note_error("stream %d: %s", sc->index, why);
}

/* The sidecar whose current stream is `id` on the session of `c`, if any. */
static sidecar_t *stream_owner(nghttp2_session *s, conn_t *c, int32_t id) {
  sidecar_t *sc = nghttp2_session_get_stream_user_data(s, id);
  return sc && sc->conn == c && sc->stream_id == id ? sc : NULL;
}

static ssize_t read_request(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *src, void *u) {
  (void)u;
  sidecar_t *sc = src->ptr;
  if (sc->closed || sc->stream_id != id || sc->conn->s != s) {
    /* A stream the sidecar has left: nothing more to send on it. */
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 0;
  }
  size_t left = sc->out.len - sc->out_off;
  if (left == 0) {
    sc->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t k = left < len ? left : len;
  memcpy(buf, sc->out.p + sc->out_off, k);
  sc->out_off += k;
  if (sc->out_off == sc->out.len) {
    sc->out.len = sc->out_off = 0;
    if (sc->out.cap > 65536) buf_free(&sc->out);
  }
  return (ssize_t)k;
}

static char grpc_status[32], grpc_message[160];

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  (void)s, (void)f, (void)u;
  grpc_status[0] = grpc_message[0] = 0;
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *u) {
  (void)s, (void)f, (void)flags, (void)u;
  char *dst = NULL;
  size_t cap = 0;
  if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0) dst = grpc_status, cap = sizeof(grpc_status);
  else if (nlen == 12 && memcmp(name, "grpc-message", 12) == 0) dst = grpc_message, cap = sizeof(grpc_message);
  if (dst) {
    size_t k = vlen < cap - 1 ? vlen : cap - 1;
    memcpy(dst, value, k);
    dst[k] = 0;
  }
  return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *u) {
  conn_t *c = u;
  if (f->hd.type == NGHTTP2_GOAWAY) {
    c->goaway = 1;
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  sidecar_t *sc = stream_owner(s, c, f->hd.stream_id);
  if (!sc || sc->closed) return 0;
  if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && !sc->opened) {
    sc->opened = 1;
    if (++opened == nsidecars) {
      json_printf(&ev, "{\"ev\":\"opened\",\"t\":%.3f}", now_ms());
      emit(&ev);
    }
  }
  if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    char why[256];
    snprintf(why, sizeof(why), "ended: grpc-status %s %s", grpc_status, grpc_message);
    stream_end(sc, why);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t n, void *u) {
  (void)flags;
  sidecar_t *sc = stream_owner(s, u, id);
  if (sc && !sc->closed) on_data(sc, d, n);
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *u) {
  sidecar_t *sc = stream_owner(s, u, id);
  if (sc) {
    char why[64];
    snprintf(why, sizeof(why), "closed (rst code %u)", code);
    stream_end(sc, why);
  }
  return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static void conn_fail(conn_t *c, const char *why);

static conn_t *conn_open(int a) {
  conn_t *c = calloc(1, sizeof(conn_t));
  if (!c) die("memory", "out of memory");
  c->addr = a;
  c->connecting = 1;
  if (nghttp2_session_client_new2(&c->s, callbacks, c, options) != 0) die("nghttp2", "session_client_new failed");
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}, {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window}};
  nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window);
  if (nconns == conns_cap) {
    conns_cap = conns_cap ? conns_cap * 2 : 64;
    conns = realloc(conns, (size_t)conns_cap * sizeof(conn_t *));
    if (!conns) die("memory", "out of memory");
  }
  conns[nconns++] = c;
  c->fd = socket(addrs[a].sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket", strerror(errno));
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (struct sockaddr *)&addrs[a].sa, addrs[a].salen) != 0 && errno != EINPROGRESS) {
    char why[300];
    snprintf(why, sizeof(why), "connect %s: %s", addrs[a].text, strerror(errno));
    conn_fail(c, why);
  }
  return c;
}

/* The connection to address `a` with room for one more stream (failover mode). */
static conn_t *pooled(int a) {
  conn_t *p = pools[a];
  if (p && p->streams < per_conn && !p->dead && !p->goaway) {
    p->streams++;
    return p;
  }
  p = conn_open(a);
  p->streams = 1;
  pools[a] = p;
  return p;
}

static void open_stream(conn_t *c, sidecar_t *sc) {
  sc->conn = c;
  sc->closed = 0;
  sc->deferred = 0;
  sc->out.len = sc->out_off = 0;
  if (c->dead) {
    sc->stream_id = -1;
    stream_end(sc, "connection failed");
    return;
  }
  const char *auth = addrs[c->addr].text;
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
  nghttp2_nv hdrs[] = {
      NV(":method", "POST"),          NV(":scheme", "http"), NV(":authority", auth), NV(":path", ADS_PATH),
      NV("content-type", "application/grpc"), NV("te", "trailers"),
  };
#undef NV
  nghttp2_data_provider dp = {.source = {.ptr = sc}, .read_callback = read_request};
  int32_t id = nghttp2_submit_request(c->s, NULL, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), &dp, sc);
  if (id < 0) {
    sc->stream_id = -1;
    stream_end(sc, nghttp2_strerror(id));
    return;
  }
  sc->stream_id = id;
  send_request(sc, CDS, NULL, NULL, NULL, &sc->node);
  send_request(sc, LDS, NULL, NULL, NULL, NULL);
}

/* A connection is gone: every stream on it ends. */
static void conn_fail(conn_t *c, const char *why) {
  if (c->dead) return;
  c->dead = 1;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (!failover_mode) note_error("session: %s", why);
  for (int i = 0; i < nsidecars; i++) {
    sidecar_t *sc = &sidecars[i];
    if (sc->conn == c && !sc->closed) stream_end(sc, why);
  }
  if (pools[c->addr] == c) pools[c->addr] = NULL;
}

/* Moves the session's frames into the connection's buffer and writes what the socket takes. */
static void conn_flush(conn_t *c) {
  if (c->dead || c->connecting) return;
  while (c->w.len - c->w_off < (1 << 18)) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(c->s, &d);
    if (n < 0) {
      conn_fail(c, nghttp2_strerror((int)n));
      return;
    }
    if (n == 0) break;
    buf_put(&c->w, d, (size_t)n);
  }
  while (c->w_off < c->w.len) {
    ssize_t n = send(c->fd, c->w.p + c->w_off, c->w.len - c->w_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      conn_fail(c, strerror(errno));
      return;
    }
    c->w_off += (size_t)n;
  }
  if (c->w_off == c->w.len) {
    c->w.len = c->w_off = 0;
    if (c->w.cap > (1 << 20)) buf_free(&c->w);
  }
  if (!nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s) && c->w.len == 0) {
    conn_fail(c, "session ended");
  }
}

static void conn_read(conn_t *c) {
  static uint8_t buf[1 << 18];
  for (int rounds = 0; rounds < 8 && !c->dead; rounds++) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n == 0) {
      conn_fail(c, "connection closed by the server");
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR) continue;
      conn_fail(c, strerror(errno));
      return;
    }
    ssize_t m = nghttp2_session_mem_recv(c->s, buf, (size_t)n);
    if (m < 0) {
      conn_fail(c, nghttp2_strerror((int)m));
      return;
    }
    if ((size_t)n < sizeof(buf)) return;
  }
}

/* ------------------------------------------------------------------ commands (flat JSON objects) */

enum { J_STR, J_NUM, J_ARR, J_LIT };

typedef struct {
  char key[32];
  int kind;
  char *str;
  double num;
  char **arr;
  int narr;
} jval_t;

typedef struct {
  jval_t v[32];
  int n;
} jobj_t;

static void jskip(const char **p) {
  while (**p == ' ' || **p == '\t' || **p == '\r' || **p == '\n') (*p)++;
}

/* A JSON string at *p (on its opening quote), unescaped; NULL if it is not one this reads. */
static char *jstring(const char **p) {
  if (**p != '"') return NULL;
  (*p)++;
  buf_t b = {0};
  for (;;) {
    char c = *(*p)++;
    if (c == 0) break;
    if (c == '"') {
      buf_put(&b, "", 1);
      return (char *)b.p;
    }
    if (c != '\\') {
      buf_put(&b, &c, 1);
      continue;
    }
    char e = *(*p)++, o;
    switch (e) {
    case '"': case '\\': case '/': o = e; break;
    case 'n': o = '\n'; break;
    case 't': o = '\t'; break;
    case 'r': o = '\r'; break;
    case 'b': o = '\b'; break;
    case 'f': o = '\f'; break;
    case 'u': {
      unsigned v = 0;
      for (int i = 0; i < 4; i++) {
        char h = *(*p)++;
        v = v * 16 + (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                                : h >= 'A' && h <= 'F' ? h - 'A' + 10 : 99);
        if (v > 0xffff) goto bad;
      }
      if (v > 127) goto bad; /* only ASCII escapes: the commands hold addresses, names and numbers */
      o = (char)v;
      break;
    }
    default:
      goto bad;
    }
    buf_put(&b, &o, 1);
  }
bad:
  buf_free(&b);
  return NULL;
}

/* Parses one flat object of strings, numbers, literals and arrays of strings; returns an error or NULL. */
static const char *jparse(const char *p, jobj_t *o) {
  memset(o, 0, sizeof(*o));
  jskip(&p);
  if (*p++ != '{') return "not a JSON object";
  jskip(&p);
  if (*p == '}') return NULL;
  for (;;) {
    jskip(&p);
    if (o->n == 32) return "too many fields";
    jval_t *v = &o->v[o->n];
    char *k = jstring(&p);
    if (!k || strlen(k) >= sizeof(v->key)) {
      free(k);
      return "bad or too long key";
    }
    strcpy(v->key, k);
    free(k);
    jskip(&p);
    if (*p++ != ':') return "':' expected";
    jskip(&p);
    if (*p == '"') {
      v->kind = J_STR;
      if (!(v->str = jstring(&p))) return "bad string";
    } else if (*p == '[') {
      v->kind = J_ARR;
      p++;
      jskip(&p);
      while (*p != ']') {
        char *s = jstring(&p);
        if (!s) return "only arrays of strings are understood";
        v->arr = realloc(v->arr, (size_t)(v->narr + 1) * sizeof(char *));
        if (!v->arr) die("memory", "out of memory");
        v->arr[v->narr++] = s;
        jskip(&p);
        if (*p == ',') p++, jskip(&p);
        else if (*p != ']') return "',' or ']' expected";
      }
      p++;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
      char *end;
      v->kind = J_NUM;
      v->num = strtod(p, &end);
      p = end;
    } else if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) {
      v->kind = J_LIT, p += 4;
    } else if (!strncmp(p, "false", 5)) {
      v->kind = J_LIT, p += 5;
    } else {
      return "value not understood (nested objects are not)";
    }
    o->n++;
    jskip(&p);
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p++ != '}') return "',' or '}' expected";
    jskip(&p);
    return *p ? "text after the object" : NULL;
  }
}

static void jfree(jobj_t *o) {
  for (int i = 0; i < o->n; i++) {
    free(o->v[i].str);
    for (int k = 0; k < o->v[i].narr; k++) free(o->v[i].arr[k]);
    free(o->v[i].arr);
  }
}

static jval_t *jget(jobj_t *o, const char *key) {
  for (int i = 0; i < o->n; i++) {
    if (strcmp(o->v[i].key, key) == 0) return &o->v[i];
  }
  return NULL;
}

static const char *cur_cmd;

static void bad_command(const char *field, const char *why) {
  fprintf(stderr, "xds_load: command %s: field %s: %s\n", cur_cmd, field, why);
  exit(2);
}

static const char *need_str(jobj_t *o, const char *key) {
  jval_t *v = jget(o, key);
  if (!v || v->kind != J_STR) bad_command(key, "a string is required");
  return v->str;
}

static double need_num(jobj_t *o, const char *key, double min, double max) {
  jval_t *v = jget(o, key);
  if (!v || v->kind != J_NUM) bad_command(key, "a number is required");
  if (!(v->num >= min && v->num <= max) || v->num != floor(v->num)) bad_command(key, "out of range");
  return v->num;
}

/* ------------------------------------------------------------------ commands */

static void set_addr(int i, const char *text) {
  if (strlen(text) >= sizeof(addrs[i].text)) bad_command("addr", "too long");
  strcpy(addrs[i].text, text);
  const char *colon = strrchr(text, ':');
  if (!colon || colon == text || !colon[1] || strlen(colon + 1) >= sizeof(addrs[i].port)) {
    bad_command("addr", "want host:port");
  }
  size_t hl = (size_t)(colon - text);
  const char *h = text;
  if (h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
  if (hl >= sizeof(addrs[i].host)) bad_command("addr", "host too long");
  memcpy(addrs[i].host, h, hl);
  addrs[i].host[hl] = 0;
  strcpy(addrs[i].port, colon + 1);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  int rv = getaddrinfo(addrs[i].host, addrs[i].port, &hints, &res);
  if (rv != 0) bad_command("addr", gai_strerror(rv));
  memcpy(&addrs[i].sa, res->ai_addr, res->ai_addrlen);
  addrs[i].salen = res->ai_addrlen;
  freeaddrinfo(res);
}

/* envoy.config.core.v3.Node as DiscoveryRequest field 2: id = 1, metadata = 3 (a Struct). */
static void node_field(buf_t *out, const char *id, const char *ns, const char *app) {
  buf_t labels = {0}, meta = {0}, entry = {0}, value = {0}, inner = {0}, node = {0};
  const char *lk[] = {"app", "version"}, *lv[] = {app, "v1"};
  for (int k = 0; k < 2; k++) { /* Struct.fields entry: key = 1, Value = 2 (string_value = 3) */
    value.len = entry.len = 0;
    buf_strfield(&value, 3, lv[k]);
    buf_strfield(&entry, 1, lk[k]);
    buf_field(&entry, 2, value.p, value.len);
    buf_field(&labels, 1, entry.p, entry.len);
  }
  value.len = entry.len = 0;
  buf_strfield(&value, 3, ns);
  buf_strfield(&entry, 1, "NAMESPACE");
  buf_field(&entry, 2, value.p, value.len);
  buf_field(&meta, 1, entry.p, entry.len);
  value.len = entry.len = 0;
  buf_field(&value, 5, labels.p, labels.len); /* struct_value = 5 */
  buf_strfield(&entry, 1, "LABELS");
  buf_field(&entry, 2, value.p, value.len);
  buf_field(&meta, 1, entry.p, entry.len);
  buf_strfield(&inner, 1, id);
  buf_field(&inner, 3, meta.p, meta.len);
  buf_field(&node, 2, inner.p, inner.len);
  *out = node;
  buf_free(&labels), buf_free(&meta), buf_free(&entry), buf_free(&value), buf_free(&inner);
}

static void cmd_start(jobj_t *o) {
  if (sidecars) bad_command("cmd", "start was already given");
  int count = (int)need_num(o, "count", 1, 1e7);
  int offset = (int)need_num(o, "offset", 0, 1e7);
  per_conn = (int)need_num(o, "perConn", 1, 1e6);
  window = (uint32_t)need_num(o, "windowMiB", 1, 2047) * 1024u * 1024u;
  conn_window = (uint32_t)need_num(o, "connWindowMiB", 1, 2047) * 1024u * 1024u;
  const char *ns = need_str(o, "namespace");
  int apps = (int)need_num(o, "apps", 1, 1e7);
  jval_t *list = jget(o, "addrs");
  if (list && list->kind != J_ARR && list->kind != J_LIT) bad_command("addrs", "an array of strings is required");
  if (list && list->kind == J_ARR && list->narr > 0) {
    if (list->narr > MAX_ADDRS) bad_command("addrs", "too many addresses");
    failover_mode = 1;
    naddrs = list->narr;
    for (int i = 0; i < naddrs; i++) set_addr(i, list->arr[i]);
    if (jget(o, "jitterMs")) jitter_ms = need_num(o, "jitterMs", 0, 600000);
  } else {
    naddrs = 1;
    set_addr(0, need_str(o, "addr"));
  }
  /* peerMaxConcurrentStreams: streams allowed before the server's SETTINGS arrive. */
  nghttp2_option_set_peer_max_concurrent_streams(options, (uint32_t)per_conn);
  nsidecars = count;
  sidecars = calloc((size_t)count, sizeof(sidecar_t));
  if (!sidecars) die("memory", "out of memory");
  for (int k = 0; k < count; k++) {
    sidecar_t *sc = &sidecars[k];
    int i = offset + k;
    char ip[32], id[512], app[64];
    snprintf(ip, sizeof(ip), "10.%d.%d.%d", 100 + ((i >> 16) & 127), (i >> 8) & 255, i & 255);
    snprintf(id, sizeof(id), "sidecar~%s~bench-%d.%s~%s.svc.cluster.local", ip, i, ns, ns);
    snprintf(app, sizeof(app), "bench-app-%d", i % apps);
    sc->index = i;
    node_field(&sc->node, id, ns, app);
    /* From addrs[i mod R], forwards or (every other sidecar) backwards. */
    int r = naddrs, step = (i / r) % 2 == 0 ? 1 : r - 1;
    for (int j = 0; j < r; j++) sc->order[j] = (uint8_t)((i + j * step) % r);
    reset_subs(sc);
    sc->stream_id = -1;
  }
  if (failover_mode) {
    for (int k = 0; k < count; k++) open_stream(pooled(sidecars[k].order[0]), &sidecars[k]);
    return;
  }
  for (int first = 0; first < count; first += per_conn) {
    conn_t *c = conn_open(0);
    for (int k = first; k < count && k < first + per_conn; k++) open_stream(c, &sidecars[k]);
  }
}

static void copy_id(char *dst, size_t cap, jobj_t *o) {
  const char *id = need_str(o, "id");
  if (strlen(id) >= cap) bad_command("id", "too long");
  strcpy(dst, id);
}

static void emit_armed(const char *id) {
  json_printf(&ev, "{\"ev\":\"armed\",\"id\":");
  json_str(&ev, id, strlen(id));
  json_printf(&ev, "}");
  emit(&ev);
}

static void cmd_arm(jobj_t *o) {
  const char *type = need_str(o, "type");
  int t = -1;
  for (int k = 0; k < NTYPES; k++) {
    if (strcmp(type, SHORT[k]) == 0) t = k;
  }
  if (t < 0) bad_command("type", "want CDS, EDS, LDS or RDS");
  jval_t *mode = jget(o, "mode");
  buf_free(&arm.frames);
  free(arm.frame_ends);
  memset(&arm, 0, sizeof(arm));
  copy_id(arm.id, sizeof(arm.id), o);
  arm.on = 1;
  arm.type = t;
  arm.any_mode = mode && mode->kind == J_STR && strcmp(mode->str, "any") == 0;
  for (int i = 0; i < nsidecars; i++) {
    sidecar_t *sc = &sidecars[i];
    sub_t *s = &sc->subs[t];
    if (s->acked.set) str_assign(&sc->baseline, (const uint8_t *)s->acked.p, s->acked.len);
    else str_clear(&sc->baseline);
    sc->converged = 0;
  }
  emit_armed(arm.id);
}

static void cmd_failover(jobj_t *o) {
  const char *addr = need_str(o, "addr");
  memset(&fo, 0, sizeof(fo));
  copy_id(fo.id, sizeof(fo.id), o);
  fo.on = 1;
  fo.addr = -1;
  for (int a = 0; a < naddrs; a++) {
    if (strcmp(addrs[a].text, addr) == 0) fo.addr = a;
  }
  for (int i = 0; i < nsidecars; i++) {
    sidecar_t *sc = &sidecars[i];
    sc->pending = fo.addr >= 0 && sc->order[sc->at] == fo.addr;
    fo.pending += sc->pending;
  }
  emit_armed(fo.id);
  if (fo.pending == 0) failover_done();
}

static void json_errors(buf_t *b) {
  buf_put(b, "[", 1);
  for (int i = 0; i < nerrors; i++) {
    if (i) buf_put(b, ",", 1);
    json_str(b, errors[i], strlen(errors[i]));
  }
  buf_put(b, "]", 1);
}

static void cmd_stats(jobj_t *o) {
  const char *id = need_str(o, "id");
  int mine = arm.on && strcmp(arm.id, id) == 0;
  json_printf(&ev, "{\"ev\":\"stats\",\"id\":");
  json_str(&ev, id, strlen(id));
  json_printf(&ev, ",\"responses\":{");
  int first = 1;
  for (int t = 0; mine && t < NTYPES; t++) {
    if (!arm.responses[t]) continue;
    json_printf(&ev, "%s\"%s\":%ld", first ? "" : ",", SHORT[t], arm.responses[t]);
    first = 0;
  }
  json_printf(&ev, "},\"bytes\":%.0f,\"frames\":[", mine ? arm.bytes : 0.0);
  for (size_t k = 0; mine && k < arm.nframes; k++) {
    size_t s = k ? arm.frame_ends[k - 1] : 0;
    if (k) buf_put(&ev, ",", 1);
    buf_put(&ev, "\"", 1);
    base64(&ev, arm.frames.p + s, arm.frame_ends[k] - s);
    buf_put(&ev, "\"", 1);
  }
  json_printf(&ev, "],\"converged\":%d,\"opened\":%d,\"full\":%d,\"closed\":%d,\"errors\":",
              mine ? arm.converged : 0, opened, full, closed);
  json_errors(&ev);
  json_printf(&ev, "}");
  emit(&ev);
}

static void command(const char *line) {
  jobj_t o;
  const char *err = jparse(line, &o);
  if (err) {
    fprintf(stderr, "xds_load: command not understood (%s): %.200s\n", err, line);
    exit(2);
  }
  jval_t *c = jget(&o, "cmd");
  if (!c || c->kind != J_STR) {
    fprintf(stderr, "xds_load: command without a \"cmd\" string: %.200s\n", line);
    exit(2);
  }
  cur_cmd = c->str;
  if (strcmp(c->str, "start") == 0) {
    cmd_start(&o);
  } else if (strcmp(c->str, "arm") == 0) {
    cmd_arm(&o);
  } else if (strcmp(c->str, "failover") == 0) {
    cmd_failover(&o);
  } else if (strcmp(c->str, "stats") == 0) {
    cmd_stats(&o);
  } else if (strcmp(c->str, "status") == 0) {
    json_printf(&ev, "{\"ev\":\"status\",\"opened\":%d,\"full\":%d,\"closed\":%d,\"errors\":", opened, full, closed);
    json_errors(&ev);
    json_printf(&ev, "}");
    emit(&ev);
  } else if (strcmp(c->str, "stop") == 0) {
    exit(0);
  } else {
    fprintf(stderr, "xds_load: unknown command \"%s\" (want start, arm, failover, stats, status or stop)\n",
            c->str);
    exit(2);
  }
  jfree(&o);
}

static void read_stdin(void) {
  static buf_t line;
  char chunk[65536];
  ssize_t n = read(0, chunk, sizeof(chunk));
  if (n == 0) exit(0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    die("stdin", strerror(errno));
  }
  buf_put(&line, chunk, (size_t)n);
  size_t start = 0;
  for (size_t i = 0; i < line.len; i++) {
    if (line.p[i] != '\n') continue;
    line.p[i] = 0;
    const char *l = (const char *)line.p + start;
    while (*l == ' ' || *l == '\t' || *l == '\r') l++;
    if (*l) command(l);
    start = i + 1;
  }
  memmove(line.p, line.p + start, line.len - start);
  line.len -= start;
}

/* ------------------------------------------------------------------ the loop */

int main(int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    fprintf(stderr, "usage: xds_load (JSON-lines commands on stdin, events on stdout; see the source's header)\n");
    return 2;
  }
  srand48((long)now_ms() ^ (long)getpid());
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_option_new(&options);
  struct pollfd *pfds = NULL;
  conn_t **polled = NULL;
  size_t pcap = 0;
  for (;;) {
    for (int i = 0; i < nconns; i++) conn_flush(conns[i]);
    /* Forget dead connections (their sidecars have moved on or stay closed). */
    int k = 0;
    for (int i = 0; i < nconns; i++) {
      conn_t *c = conns[i];
      if (!c->dead) {
        conns[k++] = c;
        continue;
      }
      if (c->s) nghttp2_session_del(c->s);
      c->s = NULL;
      buf_free(&c->w);
      /* The struct stays: sidecars that ended on it may still point at it. */
    }
    nconns = k;
    if (pcap < (size_t)nconns + 1) {
      pcap = (size_t)nconns + 64;
      pfds = realloc(pfds, pcap * sizeof(struct pollfd));
      polled = realloc(polled, pcap * sizeof(conn_t *));
      if (!pfds || !polled) die("memory", "out of memory");
    }
    pfds[0] = (struct pollfd){.fd = 0, .events = POLLIN};
    for (int i = 0; i < nconns; i++) {
      conn_t *c = conns[i];
      short e = POLLIN;
      if (c->connecting || c->w_off < c->w.len) e |= POLLOUT;
      pfds[i + 1] = (struct pollfd){.fd = c->fd, .events = e};
      polled[i] = c;
    }
    int npolled = nconns;
    int timeout = -1;
    if (ntimers > 0) {
      double wait = timers[0].due - now_ms();
      timeout = wait <= 0 ? 0 : (int)ceil(wait);
    }
    if (poll(pfds, (nfds_t)npolled + 1, timeout) < 0 && errno != EINTR) die("poll", strerror(errno));
    for (int i = 0; i < npolled; i++) {
      conn_t *c = polled[i];
      short r = pfds[i + 1].revents;
      if (!r || c->dead) continue;
      if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err) {
          char why[300];
          snprintf(why, sizeof(why), "connect %s: %s", addrs[c->addr].text, strerror(err));
          conn_fail(c, why);
          continue;
        }
        if (!(r & POLLOUT)) continue;
        c->connecting = 0;
      }
      if (r & (POLLIN | POLLHUP | POLLERR)) conn_read(c);
    }
    if (pfds[0].revents) read_stdin();
    double t = now_ms();
    while (ntimers > 0 && timers[0].due <= t) {
      sidecar_t *sc = &sidecars[timer_pop().sc];
      open_stream(pooled(sc->order[sc->at]), sc);
    }
  }
}
