/* query — private declarations shared by the parser, compiler and printer.
 * Not installed, not included outside query/ (tests and the fuzz target may). */
#ifndef PODCAP_QUERY_INTERNAL_H
#define PODCAP_QUERY_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include "query.h"

/* Hard ceilings on the configurable limits: the parser, compiler and printer
 * recurse once per nesting level, so depth must stay small whatever a caller
 * configures. */
#define Q_MAX_LEN_CEIL (1u << 20)
#define Q_MAX_DEPTH_CEIL 256u
#define Q_MAX_VALUES_CEIL 8192u
/* How much of SQLite's parser stack (YYSTACKDEPTH, 100 entries) the WHERE text
 * may use by the compiler's estimate (compile.c, emit()); the rest is for the
 * caller's statement around it: a SELECT with the WHERE text as its first term
 * one sub-select deep.  Calibrated by tests/query (hostile: "parser-stack
 * guard"): with SQLite 3.40 every kind of test prepares in that statement up to
 * an estimate of 84 and some fail from 86; 82 leaves two entries of margin and
 * still lets every kind of test nest 64 levels (the default max_depth). */
#ifndef Q_SQL_STACK
#define Q_SQL_STACK 82
#endif
/* SQLite's default SQLITE_MAX_VARIABLE_NUMBER (Debian's build allows more). */
#define Q_MAX_PARAMS 32766

/* --- field table --- */

/* The kinds of value a field takes; each decides how values are parsed, which
 * operators apply and what SQL a test becomes. */
enum q_type {
	Q_TYPE_ADDR,     /* IPv4/IPv6 address or CIDR; text column(s) in inet_ntop form */
	Q_TYPE_PORT,     /* 0..65535 */
	Q_TYPE_INT,      /* 0..max */
	Q_TYPE_ID,       /* 0..2^64-1, stored as the same 64-bit pattern */
	Q_TYPE_COUNT,    /* packets etc.: integer, k M G suffixes (x1000) */
	Q_TYPE_SIZE,     /* bytes: k M G T (x1000), Ki Mi Gi Ti (x1024), optional B */
	Q_TYPE_DURATION, /* µs: us ms s m h d */
	Q_TYPE_PROTO,    /* IP protocol: name or 0..255 */
	Q_TYPE_TEXT,     /* string; flags say case and globs */
	Q_TYPE_APP,      /* nDPI name: col[0] app_name, col[1] master_name, col[2] proto_name */
	Q_TYPE_POD,      /* "namespace/name", or "name" in any namespace */
	Q_TYPE_NS,       /* the namespace part of a "namespace/name" column */
	Q_TYPE_RISK,     /* col[0] the bitmap, col[1] "name,name" */
	Q_TYPE_LABEL,    /* a family (label.KEY): the key's value in JSON object column(s) */
	Q_TYPE_SERVICE,  /* "namespace/name:port"; "ns/name" any port, "name" any namespace */
	Q_TYPE_CONF,     /* nDPI confidence: one of a few names, "guess" = by-port or by-ip */
	Q_TYPE_N
};

enum {
	Q_F_NOCASE = 1 << 0, /* text compares ignoring ASCII case */
	Q_F_GLOB = 1 << 1,   /* '*' in a value is a wildcard */
	Q_F_RANGE = 1 << 2,  /* an index on col[0] serves prefix ranges (BINARY collation) */
	Q_F_FAMILY = 1 << 3, /* info.name is "prefix.KEY": any "prefix.<key>" is this field */
};

/* Label keys as Kubernetes allows them (an optional DNS prefix and '/', then
 * [A-Za-z0-9._-]), at most this long. */
#define Q_LABEL_KEY_MAX 317

struct q_field_def {
	struct q_field_info info;  /* public part (first member: q_field() returns it) */
	enum q_type type;
	const char *col[3];        /* SQL column expressions (OR-ed: either end); unused ones NULL */
	const char *exists;        /* SQL for `exists`; NULL = "<col> IS NOT NULL" per column */
	const char *wrap;          /* NULL, or SQL with one "%s" put around every test */
	int64_t max;               /* Q_TYPE_INT: the largest value */
	unsigned flags;
};

extern const struct q_field_def q_field_defs[];
extern const size_t q_nfields;
/* The field called name (len bytes, case-insensitive), or NULL.  For a family
 * field ("label.app") *keyoff is the offset of the key in name (else 0); the
 * caller checks the key with q_label_key_ok. */
const struct q_field_def *q_field_find(const char *name, size_t len, size_t *keyoff);
/* 1 when key (len bytes) is a valid Kubernetes label key. */
int q_label_key_ok(const char *key, size_t len);
/* The canonical confidence name for what a user wrote ("Match by port",
 * "port", "BY-PORT" -> "by-port"; "guess"), or NULL. */
const char *q_confidence_canon(const char *s, size_t n);
/* The closest field name within edit distance 2, or NULL: for "did you mean". */
const char *q_field_suggest(const char *name, size_t len);
const char *q_type_name(enum q_type t);

/* --- AST --- */

enum q_op {
	Q_OP_EQ, Q_OP_NE, Q_OP_LT, Q_OP_LE, Q_OP_GT, Q_OP_GE,
	Q_OP_IN, Q_OP_NOT_IN, Q_OP_MATCH, Q_OP_NOT_MATCH, Q_OP_EXISTS,
};

enum q_vkind {
	Q_V_INT,    /* i: numbers (sizes in bytes, durations in µs, ids as bit pattern) */
	Q_V_ADDR,   /* addr, family 4/6, bits (prefix length; 32/128 = one address) */
	Q_V_TEXT,   /* text, len; exact */
	Q_V_GLOB,   /* text, len; contains '*' wildcards */
};

struct q_value {
	enum q_vkind kind;
	uint32_t pos;          /* byte offset of the value in the filter text */
	int64_t i;
	uint8_t addr[16];
	uint8_t family, bits;
	char *text;            /* NUL-terminated, len bytes, valid UTF-8 */
	uint32_t len;
};

enum q_nkind { Q_N_AND, Q_N_OR, Q_N_NOT, Q_N_TEST };

struct q_node {
	enum q_nkind kind;
	uint32_t pos;                    /* byte offset where the node starts */
	/* AND / OR: nkids >= 2 children; NOT: one */
	struct q_node **kids;
	uint32_t nkids;
	/* TEST */
	const struct q_field_def *field;
	const char *key;                 /* family fields: the key ("app" of label.app) */
	uint32_t keylen;
	enum q_op op;
	struct q_value *vals;            /* none for EXISTS; one for comparisons */
	uint32_t nvals;
};

struct q_arena;
struct q_filter {
	struct q_arena *arena;           /* owns every node, value and string */
	struct q_node *root;             /* NULL: empty filter (matches all) */
	uint32_t nvalues;
	uint32_t depth;                  /* deepest nesting seen */
	char *text;                      /* a copy of the filter text, for positions */
	size_t len;
};

/* --- helpers --- */

/* 1-based character (code point) position of a byte offset in text. */
uint32_t q_char_pos(const char *text, size_t len, size_t byte);
/* Fill err: code, position (byte offset → character position in text; text NULL
 * = no position), found, expected, and msg "position N: expected E, found F".
 * q_err_setf writes msg from fmt instead: "position N: <fmt...>". */
void q_err_set(struct q_error *err, int code, const char *text, size_t len, size_t byte,
	       const char *found, const char *expected);
void q_err_setf(struct q_error *err, int code, const char *text, size_t len, size_t byte,
		const char *found, const char *expected, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));
/* Describes len bytes of token text for a message: "'abc'" (truncated with "..."
 * at a character boundary). */
/* err (may be NULL) set to the formatted message, code rc, position pos; returns rc. */
int q_err(struct q_error *err, int rc, int pos, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

void q_describe(char *out, size_t outlen, const char *tok, size_t toklen);

/* Parsers of values, shared with q_time_parse.  Each returns 0, or -EINVAL
 * (malformed) / -ERANGE (too large) without touching *out. */
int q_parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out);
int q_parse_duration(const char *s, size_t n, int64_t *out_us);
int q_parse_size(const char *s, size_t n, int binary_ok, int64_t *out);
/* Parses "A" or "A/bits"; normalises IPv4-mapped IPv6 to IPv4 and clears host bits. */
int q_parse_addr(const char *s, size_t n, uint8_t addr[16], uint8_t *family, uint8_t *bits);
/* The protocol number of a name ("tcp"), or -1. */
int q_proto_number(const char *s, size_t n);
/* The name of a protocol number, or NULL. */
const char *q_proto_name(int64_t proto);

/* Growable text buffer used by compile and print; out-of-memory is sticky. */
struct q_buf {
	char *p;
	size_t len, cap;
	int oom;
};
void q_buf_add(struct q_buf *b, const char *s, size_t n);
void q_buf_puts(struct q_buf *b, const char *s);
void q_buf_printf(struct q_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
