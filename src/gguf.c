/* gguf.c — GGUF v2/v3 reader (memory-mapped or in a caller's buffer, weights never copied) and
 * writer (v3). The file is untrusted: every count, length, dimension and offset is checked
 * against the bytes that remain, with overflow-safe arithmetic, before anything is allocated. */
#include "nbl_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 16   /* nested arrays deeper than this are rejected, never recursed into */
#define GGUF_MIN_KV_BYTES 13 /* key length (8) + value type (4) + smallest value (1) */
#define GGUF_MIN_TI_BYTES 32 /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */
#define GGUF_MIN_ARR_BYTES 12 /* nested array header: element type (4) + count (8) */

int nbl_str_eq(nbl_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

uint32_t nbl_gguf_type_size(uint32_t type) {
    switch (type) {
    case NBL_GGUF_UINT8: case NBL_GGUF_INT8: case NBL_GGUF_BOOL: return 1;
    case NBL_GGUF_UINT16: case NBL_GGUF_INT16: return 2;
    case NBL_GGUF_UINT32: case NBL_GGUF_INT32: case NBL_GGUF_FLOAT32: return 4;
    case NBL_GGUF_UINT64: case NBL_GGUF_INT64: case NBL_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *type_name(uint32_t t) {
    static const char *const names[NBL_GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return t < NBL_GGUF_TYPE_COUNT ? names[t] : "invalid";
}

static int is_int_type(uint32_t t) {
    return t <= NBL_GGUF_INT32 || t == NBL_GGUF_UINT64 || t == NBL_GGUF_INT64;
}
static int is_signed_type(uint32_t t) {
    return t == NBL_GGUF_INT8 || t == NBL_GGUF_INT16 || t == NBL_GGUF_INT32 || t == NBL_GGUF_INT64;
}

/* Names in messages come from the file: show them escaped and capped so a hostile name can
 * neither break the terminal nor crowd out the rest of the message. */
static const char *esc(char *buf, size_t cap, const char *p, uint64_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        int plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '\'';
        if (o + (plain ? 1 : 4) + 4 > cap) {
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (plain) {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\', buf[o++] = 'x', buf[o++] = hex[c >> 4], buf[o++] = hex[c & 15];
        }
    }
    buf[o] = 0;
    return buf;
}

#define NAME_CAP 100

static uint64_t hash_bytes(const void *p, uint64_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

/* ---- reader ------------------------------------------------------------------------------ */

/* Every allocation of a parsed file hangs off one list, so freeing (after success or any
 * error) is a single walk. */
typedef struct blk {
    struct blk *next;
    _Alignas(16) unsigned char data[];
} blk;

/* Open-addressing table of indices + 1 (0 = empty); size a power of two, at least 2n. */
typedef struct htab {
    uint64_t *slot;
    uint64_t mask;
} htab;

typedef struct priv {
    blk *blocks;
    void *map;
    size_t map_len;
    htab kv_ht, t_ht;
} priv;

typedef struct gguf_full {
    nbl_gguf g;
    priv p;
} gguf_full;

typedef struct parser {
    const uint8_t *b;
    uint64_t size, pos; /* size: bytes readable at b */
    uint64_t file;      /* the file's size: size, or more when only a metadata prefix was read */
    uint64_t more;      /* a prefix ran short: the bytes it would need to go on */
    int meta;           /* metadata only: tensors get no data pointers */
    priv *pv;
    nbl_error *err;
    char who[NAME_CAP + 24]; /* "key '...'" / "tensor '...'" / "" */
} parser;

static void *arena_alloc(priv *pv, uint64_t n) {
    if (n > SIZE_MAX - sizeof(blk)) return NULL;
    blk *b = malloc(sizeof(blk) + (size_t)n);
    if (!b) return NULL;
    b->next = pv->blocks;
    pv->blocks = b;
    return b->data;
}

static nbl_status perr(parser *P, nbl_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static nbl_status perr(parser *P, nbl_status code, const char *fmt, ...) {
    char tmp[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return nbl_set_err(P->err, code, "gguf: %s%s%s", P->who, P->who[0] ? ": " : "", tmp);
}

/* n bytes at P->pos lie in the file but past the metadata prefix read: the caller reads more. */
static nbl_status short_prefix(parser *P, uint64_t n) {
    if (P->pos + n > P->more) P->more = P->pos + n;
    return nbl_set_err(P->err, NBL_E_FORMAT, "gguf: the metadata goes on past the first %llu bytes read",
                       (unsigned long long)P->size);
}

static nbl_status need(parser *P, uint64_t n, const char *what) {
    if (n > P->file - P->pos)
        return perr(P, NBL_E_FORMAT, "%s truncated: %llu bytes needed at offset %llu, file size %llu",
                    what, (unsigned long long)n, (unsigned long long)P->pos,
                    (unsigned long long)P->file);
    if (n > P->size - P->pos) return short_prefix(P, n);
    return NBL_OK;
}

static uint64_t le(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static nbl_status rd_u32(parser *P, uint32_t *v, const char *what) {
    nbl_status s = need(P, 4, what);
    if (s) return s;
    *v = (uint32_t)le(P->b + P->pos, 4);
    P->pos += 4;
    return NBL_OK;
}

static nbl_status rd_u64(parser *P, uint64_t *v, const char *what) {
    nbl_status s = need(P, 8, what);
    if (s) return s;
    *v = le(P->b + P->pos, 8);
    P->pos += 8;
    return NBL_OK;
}

static nbl_status rd_str(parser *P, nbl_str *out, const char *what) {
    uint64_t n;
    nbl_status s = rd_u64(P, &n, what);
    if (s) return s;
    if (n > P->file - P->pos)
        return perr(P, NBL_E_FORMAT, "%s length %llu at offset %llu extends past end of file (size %llu)",
                    what, (unsigned long long)n, (unsigned long long)(P->pos - 8),
                    (unsigned long long)P->file);
    if (n > P->size - P->pos) return short_prefix(P, n);
    out->ptr = (const char *)P->b + P->pos;
    out->len = n;
    P->pos += n;
    return NBL_OK;
}

/* Fills a fixed-size scalar from its little-endian bytes (already bounds-checked). */
static void decode_scalar(uint32_t type, const uint8_t *p, nbl_gguf_value *v) {
    uint32_t sz = nbl_gguf_type_size(type);
    uint64_t raw = le(p, sz);
    switch (type) {
    case NBL_GGUF_INT8: v->i64 = (int8_t)raw; break;
    case NBL_GGUF_INT16: v->i64 = (int16_t)raw; break;
    case NBL_GGUF_INT32: v->i64 = (int32_t)raw; break;
    case NBL_GGUF_INT64: v->i64 = (int64_t)raw; break;
    case NBL_GGUF_BOOL: v->u64 = raw != 0; break;
    case NBL_GGUF_FLOAT32: {
        uint32_t u = (uint32_t)raw;
        float f;
        memcpy(&f, &u, 4);
        v->f64 = f;
        break;
    }
    case NBL_GGUF_FLOAT64: memcpy(&v->f64, &raw, 8); break;
    default: v->u64 = raw; break;
    }
}

static nbl_status parse_array(parser *P, nbl_gguf_value *v, int depth);

static nbl_status parse_value(parser *P, uint32_t type, nbl_gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = type;
    if (type == NBL_GGUF_STRING) return rd_str(P, &v->str, "string value");
    if (type == NBL_GGUF_ARRAY) return parse_array(P, v, depth + 1);
    uint32_t sz = nbl_gguf_type_size(type);
    if (!sz) return perr(P, NBL_E_FORMAT, "invalid value type %u", type);
    nbl_status s = need(P, sz, "value");
    if (s) return s;
    decode_scalar(type, P->b + P->pos, v);
    P->pos += sz;
    return NBL_OK;
}

static nbl_status parse_array(parser *P, nbl_gguf_value *v, int depth) {
    if (depth > GGUF_MAX_DEPTH)
        return perr(P, NBL_E_FORMAT, "arrays nested deeper than %d levels at offset %llu",
                    GGUF_MAX_DEPTH, (unsigned long long)P->pos);
    uint32_t et;
    uint64_t n;
    nbl_status s = rd_u32(P, &et, "array element type");
    if (!s) s = rd_u64(P, &n, "array length");
    if (s) return s;
    if (et >= NBL_GGUF_TYPE_COUNT)
        return perr(P, NBL_E_FORMAT, "invalid array element type %u at offset %llu", et,
                    (unsigned long long)(P->pos - 12));
    v->arr.type = et;
    v->arr.n = n;
    /* Each element takes at least min bytes, so a count the file cannot hold fails here,
     * before any allocation proportional to it. */
    uint64_t min = nbl_gguf_type_size(et), total;
    if (et == NBL_GGUF_STRING) min = 8;
    if (et == NBL_GGUF_ARRAY) min = GGUF_MIN_ARR_BYTES;
    if (nbl_mul_ovf(n, min, &total) || total > P->file - P->pos)
        return perr(P, NBL_E_FORMAT,
                    "array of %llu %s elements at offset %llu extends past end of file (size %llu)",
                    (unsigned long long)n, type_name(et), (unsigned long long)(P->pos - 12),
                    (unsigned long long)P->file);
    if (et != NBL_GGUF_STRING && et != NBL_GGUF_ARRAY) {
        if (total > P->size - P->pos) return short_prefix(P, total);
        v->arr.raw = P->b + P->pos;
        P->pos += total;
        return NBL_OK;
    }
    if (n == 0) return NBL_OK;
    if (et == NBL_GGUF_STRING) {
        nbl_str *strs = arena_alloc(P->pv, n * sizeof(nbl_str));
        if (!strs) return perr(P, NBL_E_NOMEM, "out of memory for %llu strings", (unsigned long long)n);
        v->arr.strs = strs;
        for (uint64_t i = 0; i < n; i++)
            if ((s = rd_str(P, &strs[i], "array string"))) return s;
        return NBL_OK;
    }
    nbl_gguf_value *items = arena_alloc(P->pv, n * sizeof(nbl_gguf_value));
    if (!items) return perr(P, NBL_E_NOMEM, "out of memory for %llu arrays", (unsigned long long)n);
    v->arr.items = items;
    for (uint64_t i = 0; i < n; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].type = NBL_GGUF_ARRAY;
        if ((s = parse_array(P, &items[i], depth + 1))) return s;
    }
    return NBL_OK;
}

static nbl_status ht_init(parser *P, htab *h, uint64_t n) {
    uint64_t cap = 8;
    while (cap < 2 * n) cap <<= 1; /* n is bounded by file size / 13, so this cannot overflow */
    h->slot = arena_alloc(P->pv, cap * sizeof(uint64_t));
    if (!h->slot) return perr(P, NBL_E_NOMEM, "out of memory for a table of %llu entries",
                              (unsigned long long)n);
    memset(h->slot, 0, cap * sizeof(uint64_t));
    h->mask = cap - 1;
    return NBL_OK;
}

/* The name of entry i of a table, for the two kinds of table. */
typedef nbl_str (*name_fn)(const nbl_gguf *g, uint64_t i);
static nbl_str kv_name(const nbl_gguf *g, uint64_t i) { return g->kv[i].key; }
static nbl_str t_name(const nbl_gguf *g, uint64_t i) { return g->tensors[i].name; }

/* Inserts entry idx; returns 0 if an entry with the same name exists already. */
static int ht_insert(const htab *h, const nbl_gguf *g, name_fn name, uint64_t idx) {
    nbl_str s = name(g, idx);
    for (uint64_t k = hash_bytes(s.ptr, s.len) & h->mask;; k = (k + 1) & h->mask) {
        if (!h->slot[k]) {
            h->slot[k] = idx + 1;
            return 1;
        }
        nbl_str o = name(g, h->slot[k] - 1);
        if (o.len == s.len && (s.len == 0 || memcmp(o.ptr, s.ptr, s.len) == 0)) return 0;
    }
}

static int64_t ht_find(const htab *h, const nbl_gguf *g, name_fn name, const char *key) {
    if (!h->slot || !key) return -1;
    size_t n = strlen(key);
    for (uint64_t k = hash_bytes(key, n) & h->mask; h->slot[k]; k = (k + 1) & h->mask) {
        nbl_str o = name(g, h->slot[k] - 1);
        if (o.len == n && (n == 0 || memcmp(o.ptr, key, n) == 0)) return (int64_t)(h->slot[k] - 1);
    }
    return -1;
}

static void set_who(parser *P, const char *kind, nbl_str name) {
    char nb[NAME_CAP];
    snprintf(P->who, sizeof P->who, "%s '%s'", kind, esc(nb, sizeof nb, name.ptr, name.len));
}

static nbl_status parse_kvs(parser *P, nbl_gguf *g) {
    nbl_status s;
    uint64_t total;
    if (nbl_mul_ovf(g->n_kv, GGUF_MIN_KV_BYTES, &total) || total > P->file - P->pos)
        return perr(P, NBL_E_FORMAT, "kv count %llu exceeds what the file can hold (size %llu)",
                    (unsigned long long)g->n_kv, (unsigned long long)P->file);
    if (g->n_kv) {
        g->kv = arena_alloc(P->pv, g->n_kv * sizeof(nbl_gguf_kv));
        if (!g->kv) return perr(P, NBL_E_NOMEM, "out of memory for %llu kvs", (unsigned long long)g->n_kv);
    }
    if ((s = ht_init(P, &P->pv->kv_ht, g->n_kv))) return s;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        nbl_gguf_kv *kv = &g->kv[i];
        snprintf(P->who, sizeof P->who, "kv #%llu", (unsigned long long)i);
        uint32_t type;
        if ((s = rd_str(P, &kv->key, "key"))) return s;
        set_who(P, "key", kv->key);
        if ((s = rd_u32(P, &type, "value type"))) return s;
        if (type >= NBL_GGUF_TYPE_COUNT) return perr(P, NBL_E_FORMAT, "invalid value type %u", type);
        if ((s = parse_value(P, type, &kv->val, 0))) return s;
        if (!ht_insert(&P->pv->kv_ht, g, kv_name, i)) return perr(P, NBL_E_FORMAT, "duplicate key");
    }
    P->who[0] = 0;
    return NBL_OK;
}

static nbl_status parse_tensor_info(parser *P, nbl_gguf *g, uint64_t i) {
    nbl_gguf_tensor *t = &g->tensors[i];
    nbl_status s;
    snprintf(P->who, sizeof P->who, "tensor #%llu", (unsigned long long)i);
    if ((s = rd_str(P, &t->name, "name"))) return s;
    set_who(P, "tensor", t->name);
    if ((s = rd_u32(P, &t->n_dims, "n_dims"))) return s;
    if (t->n_dims < 1 || t->n_dims > 4)
        return perr(P, NBL_E_FORMAT, "n_dims %u out of range 1..4", t->n_dims);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < 4; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims && (s = rd_u64(P, &ne, "dimension"))) return s;
        /* Zero-sized dimensions are rejected: no model weight is empty, and allowing them
         * would let a tensor claim an offset without owning any bytes. */
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return perr(P, NBL_E_FORMAT, "dimension %u is %llu (must be 1..2^63-1)", d,
                        (unsigned long long)ne);
        if (nbl_mul_ovf(nel, ne, &nel) || nel > (uint64_t)INT64_MAX)
            return perr(P, NBL_E_FORMAT, "element count overflows int64");
        t->ne[d] = (int64_t)ne;
    }
    if ((s = rd_u32(P, &t->type, "type"))) return s;
    const nbl_type_traits *tr = nbl_type_traits_get(t->type);
    if (!tr) return perr(P, NBL_E_FORMAT, "unknown type id %u", t->type);
    if (t->ne[0] % tr->blck)
        return perr(P, NBL_E_FORMAT, "row length %lld is not a multiple of the %s block size %d",
                    (long long)t->ne[0], tr->name, tr->blck);
    uint64_t nb;
    if (nbl_mul_ovf((uint64_t)t->ne[0] / (uint64_t)tr->blck, (uint64_t)tr->type_size, &nb) ||
        nbl_mul_ovf(nb, (uint64_t)t->ne[1], &nb) || nbl_mul_ovf(nb, (uint64_t)t->ne[2], &nb) ||
        nbl_mul_ovf(nb, (uint64_t)t->ne[3], &nb))
        return perr(P, NBL_E_FORMAT, "byte size overflows");
    t->nbytes = nb;
    if ((s = rd_u64(P, &t->offset, "offset"))) return s;
    if (!ht_insert(&P->pv->t_ht, g, t_name, i)) return perr(P, NBL_E_FORMAT, "duplicate tensor name");
    return NBL_OK;
}

static nbl_status parse(parser *P, nbl_gguf *g) {
    nbl_status s;
    P->who[0] = 0;
    if (P->size < 4 && P->file >= 4) return short_prefix(P, 4);
    if (P->size < 4 || memcmp(P->b, GGUF_MAGIC, 4) != 0)
        return perr(P, NBL_E_FORMAT, "bad magic (not a GGUF file)");
    P->pos = 4;
    if ((s = rd_u32(P, &g->version, "version"))) return s;
    if (g->version == 1)
        return perr(P, NBL_E_UNSUPPORTED, "unsupported version 1 (only GGUF v2 and v3 are read)");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0)
            return perr(P, NBL_E_UNSUPPORTED, "unsupported version %u (a big-endian file?)", g->version);
        return perr(P, NBL_E_UNSUPPORTED, "unsupported version %u (only v2 and v3)", g->version);
    }
    if ((s = rd_u64(P, &g->n_tensors, "tensor count"))) return s;
    if ((s = rd_u64(P, &g->n_kv, "kv count"))) return s;
    if ((s = parse_kvs(P, g))) return s;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = ht_find(&P->pv->kv_ht, g, kv_name, "general.alignment");
    if (ai >= 0) {
        const nbl_gguf_value *v = &g->kv[ai].val;
        snprintf(P->who, sizeof P->who, "key 'general.alignment'");
        if (v->type != NBL_GGUF_UINT32)
            return perr(P, NBL_E_FORMAT, "type %s, expected uint32", type_name(v->type));
        if (v->u64 == 0 || (v->u64 & (v->u64 - 1)))
            return perr(P, NBL_E_FORMAT, "alignment %llu is not a nonzero power of two",
                        (unsigned long long)v->u64);
        g->alignment = v->u64;
        P->who[0] = 0;
    }

    uint64_t total;
    if (nbl_mul_ovf(g->n_tensors, GGUF_MIN_TI_BYTES, &total) || total > P->file - P->pos)
        return perr(P, NBL_E_FORMAT, "tensor count %llu exceeds what the file can hold (size %llu)",
                    (unsigned long long)g->n_tensors, (unsigned long long)P->file);
    if (g->n_tensors) {
        g->tensors = arena_alloc(P->pv, g->n_tensors * sizeof(nbl_gguf_tensor));
        if (!g->tensors)
            return perr(P, NBL_E_NOMEM, "out of memory for %llu tensors", (unsigned long long)g->n_tensors);
        memset(g->tensors, 0, g->n_tensors * sizeof(nbl_gguf_tensor));
    }
    if ((s = ht_init(P, &P->pv->t_ht, g->n_tensors))) return s;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((s = parse_tensor_info(P, g, i))) return s;
    P->who[0] = 0;

    /* The data section starts at the next multiple of the alignment. A file without tensors
     * may end before that; its data section is then empty, at the end of the file. */
    uint64_t a = g->alignment, pad = (a - P->pos % a) % a;
    if (pad > P->file - P->pos) {
        if (g->n_tensors)
            return perr(P, NBL_E_FORMAT, "data section (offset %llu + %llu padding) past end of file (size %llu)",
                        (unsigned long long)P->pos, (unsigned long long)pad, (unsigned long long)P->file);
        pad = P->file - P->pos;
    }
    g->data_offset = P->pos + pad;
    uint64_t data_size = P->file - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        nbl_gguf_tensor *t = &g->tensors[i];
        set_who(P, "tensor", t->name);
        if (t->offset % a)
            return perr(P, NBL_E_FORMAT, "data offset %llu is not a multiple of the alignment %llu",
                        (unsigned long long)t->offset, (unsigned long long)a);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return perr(P, NBL_E_FORMAT,
                        "data [offset %llu, %llu bytes] extends past end of file (size %llu, data section at %llu)",
                        (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                        (unsigned long long)P->file, (unsigned long long)g->data_offset);
        /* A metadata prefix holds no tensor data: nbl_gguf_attach_data supplies it later. */
        t->data = P->meta ? NULL : P->b + g->data_offset + t->offset;
    }
    return NBL_OK;
}

static void free_priv(priv *pv) {
    for (blk *b = pv->blocks, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    pv->blocks = NULL;
    if (pv->map) munmap(pv->map, pv->map_len);
    pv->map = NULL;
}

int nbl_gguf_mapped(const nbl_gguf *g) { return g && ((const gguf_full *)g)->p.map != NULL; }

void nbl_gguf_drop_pages(nbl_gguf *g, const void *p, size_t len) {
    if (!g || !p) return;
    const priv *pv = &((gguf_full *)g)->p;
    const uintptr_t m0 = (uintptr_t)pv->map, m1 = m0 + pv->map_len, pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + len;
    if (!pv->map || a < m0 || b > m1 || b < a) return;
    a = (a + pg - 1) & ~(pg - 1); /* whole pages only: the neighbours may still be in use */
    b &= ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

void nbl_gguf_free(nbl_gguf *g) {
    if (!g) return;
    gguf_full *f = (gguf_full *)g;
    free_priv(&f->p);
    free(f);
}

/* Parses data/size into a new object that takes ownership of map (may be NULL). file > size:
 * data is the first size bytes of a file of that many (metadata only); *more, when not NULL,
 * gets the bytes the prefix would need where it ran short, else 0. */
static nbl_status open_common(const void *data, uint64_t size, uint64_t file, uint64_t *more,
                              void *map, size_t map_len, nbl_gguf **out, nbl_error *err) {
    gguf_full *f = calloc(1, sizeof *f);
    if (!f) {
        if (map) munmap(map, map_len);
        return nbl_set_err(err, NBL_E_NOMEM, "gguf: out of memory");
    }
    f->g.priv = &f->p;
    f->p.map = map;
    f->p.map_len = map_len;
    const int meta = more != NULL;
    f->g.base = meta ? NULL : data;
    f->g.has_data = !meta;
    f->g.size = file;
    parser P = {.b = data, .size = size, .file = file, .pv = &f->p, .err = err, .meta = meta};
    nbl_status s = parse(&P, &f->g);
    if (more) *more = s ? P.more : 0;
    if (s) {
        nbl_gguf_free(&f->g);
        return s;
    }
    *out = &f->g;
    return NBL_OK;
}

nbl_status nbl_gguf_open_buffer(const void *data, size_t size, nbl_gguf **out, nbl_error *err) {
    if (!out || (!data && size)) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    *out = NULL;
    return open_common(data ? data : "", size, size, NULL, NULL, 0, out, err);
}

nbl_status nbl_gguf_open_meta(const void *prefix, size_t avail, uint64_t file_size, uint64_t *more,
                              nbl_gguf **out, nbl_error *err) {
    if (more) *more = 0;
    if (!out || !more || (!prefix && avail)) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    *out = NULL;
    if (avail > file_size)
        return nbl_set_err(err, NBL_E_ARG, "gguf: %llu bytes read of a %llu-byte file",
                           (unsigned long long)avail, (unsigned long long)file_size);
    return open_common(prefix ? prefix : "", avail, file_size, more, NULL, 0, out, err);
}

nbl_status nbl_gguf_attach_data(nbl_gguf *g, const void *data, uint64_t size, nbl_error *err) {
    if (!g || !data) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    if (g->has_data) return nbl_set_err(err, NBL_E_STATE, "gguf: the tensor data is already there");
    if (size != g->size - g->data_offset)
        return nbl_set_err(err, NBL_E_ARG, "gguf: the data section is %llu bytes, not %llu",
                           (unsigned long long)(g->size - g->data_offset), (unsigned long long)size);
    for (uint64_t i = 0; i < g->n_tensors; i++) g->tensors[i].data = (const uint8_t *)data + g->tensors[i].offset;
    g->has_data = 1;
    return NBL_OK;
}

nbl_status nbl_gguf_open_file(const char *path, nbl_gguf **out, nbl_error *err) {
    if (!out || !path) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nbl_set_err(err, NBL_E_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return nbl_set_err(err, NBL_E_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nbl_set_err(err, NBL_E_IO, "gguf: '%s' is not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return nbl_set_err(err, NBL_E_NOMEM, "gguf: '%s' (%llu bytes) does not fit in the address space",
                           path, (unsigned long long)st.st_size);
    }
    size_t len = (size_t)st.st_size;
    if (len == 0) {
        close(fd);
        return nbl_set_err(err, NBL_E_FORMAT, "gguf: '%s' is empty (not a GGUF file)", path);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return nbl_set_err(err, NBL_E_IO, "gguf: cannot map '%s': %s", path, strerror(e));
    nbl_status s = open_common(map, len, len, NULL, map, len, out, err);
    if (s && err) {
        /* Say which file was at fault: prefix the path, keeping the message within bounds. */
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%s", err->msg);
        nbl_set_err(err, s, "%s (in '%s')", tmp, path);
    }
    return s;
}

/* ---- lookups and getters ------------------------------------------------------------------- */

const nbl_gguf_kv *nbl_gguf_find(const nbl_gguf *g, const char *key) {
    if (!g || !key) return NULL;
    int64_t i = ht_find(&((const gguf_full *)g)->p.kv_ht, g, kv_name, key);
    return i < 0 ? NULL : &g->kv[i];
}

const nbl_gguf_tensor *nbl_gguf_find_tensor(const nbl_gguf *g, const char *name) {
    if (!g || !name) return NULL;
    int64_t i = ht_find(&((const gguf_full *)g)->p.t_ht, g, t_name, name);
    return i < 0 ? NULL : &g->tensors[i];
}

static int bad_type(const char *key, uint32_t type, const char *want, nbl_error *err) {
    char kb[NAME_CAP];
    nbl_set_err(err, NBL_E_FORMAT, "gguf: key '%s' has type %s, expected %s",
                esc(kb, sizeof kb, key, strlen(key)), type_name(type), want);
    return -1;
}

int nbl_gguf_get_int(const nbl_gguf *g, const char *key, int64_t *out, nbl_error *err) {
    const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
    if (!kv) return 0;
    uint32_t t = kv->val.type;
    if (!is_int_type(t) && t != NBL_GGUF_BOOL) return bad_type(key, t, "an integer", err);
    if (t == NBL_GGUF_UINT64 && kv->val.u64 > (uint64_t)INT64_MAX) {
        char kb[NAME_CAP];
        nbl_set_err(err, NBL_E_FORMAT, "gguf: key '%s' value %llu does not fit in int64",
                    esc(kb, sizeof kb, key, strlen(key)), (unsigned long long)kv->val.u64);
        return -1;
    }
    *out = is_signed_type(t) ? kv->val.i64 : (int64_t)kv->val.u64;
    return 1;
}

int nbl_gguf_get_float(const nbl_gguf *g, const char *key, double *out, nbl_error *err) {
    const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
    if (!kv) return 0;
    uint32_t t = kv->val.type;
    if (t == NBL_GGUF_FLOAT32 || t == NBL_GGUF_FLOAT64) *out = kv->val.f64;
    else if (is_signed_type(t)) *out = (double)kv->val.i64;
    else if (is_int_type(t)) *out = (double)kv->val.u64;
    else return bad_type(key, t, "a number", err);
    return 1;
}

int nbl_gguf_get_bool(const nbl_gguf *g, const char *key, bool *out, nbl_error *err) {
    const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->val.type != NBL_GGUF_BOOL) return bad_type(key, kv->val.type, "bool", err);
    *out = kv->val.u64 != 0;
    return 1;
}

int nbl_gguf_get_str(const nbl_gguf *g, const char *key, nbl_str *out, nbl_error *err) {
    const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->val.type != NBL_GGUF_STRING) return bad_type(key, kv->val.type, "string", err);
    *out = kv->val.str;
    return 1;
}

int nbl_gguf_get_arr(const nbl_gguf *g, const char *key, uint32_t elem_type,
                     const nbl_gguf_value **out, nbl_error *err) {
    const nbl_gguf_kv *kv = nbl_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->val.type != NBL_GGUF_ARRAY) return bad_type(key, kv->val.type, "array", err);
    if (elem_type != UINT32_MAX && kv->val.arr.type != elem_type) {
        char kb[NAME_CAP];
        nbl_set_err(err, NBL_E_FORMAT, "gguf: key '%s' is an array of %s, expected an array of %s",
                    esc(kb, sizeof kb, key, strlen(key)), type_name(kv->val.arr.type),
                    type_name(elem_type));
        return -1;
    }
    *out = &kv->val;
    return 1;
}

int64_t nbl_gguf_arr_int(const nbl_gguf_value *arr, uint64_t i) {
    uint32_t t = arr->arr.type, sz = nbl_gguf_type_size(t);
    if ((!is_int_type(t) && t != NBL_GGUF_BOOL) || !arr->arr.raw) return 0;
    nbl_gguf_value v;
    decode_scalar(t, arr->arr.raw + i * sz, &v);
    return is_signed_type(t) ? v.i64 : (int64_t)v.u64;
}

double nbl_gguf_arr_float(const nbl_gguf_value *arr, uint64_t i) {
    uint32_t t = arr->arr.type, sz = nbl_gguf_type_size(t);
    if (!sz || t == NBL_GGUF_BOOL || !arr->arr.raw) return 0;
    nbl_gguf_value v;
    decode_scalar(t, arr->arr.raw + i * sz, &v);
    if (t == NBL_GGUF_FLOAT32 || t == NBL_GGUF_FLOAT64) return v.f64;
    return is_signed_type(t) ? (double)v.i64 : (double)v.u64;
}

/* ---- writer -------------------------------------------------------------------------------- */

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes, offset;
    const void *data; /* borrowed */
} wtensor;

struct nbl_gguf_writer {
    nbl_gguf_kv *kv; /* keys and values owned (deep copies) */
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
};

nbl_gguf_writer *nbl_gguf_writer_new(void) { return calloc(1, sizeof(nbl_gguf_writer)); }

static void wval_free(nbl_gguf_value *v) {
    if (v->type == NBL_GGUF_STRING) {
        free((char *)v->str.ptr);
    } else if (v->type == NBL_GGUF_ARRAY) {
        if (v->arr.strs)
            for (uint64_t i = 0; i < v->arr.n; i++) free((char *)v->arr.strs[i].ptr);
        if (v->arr.items)
            for (uint64_t i = 0; i < v->arr.n; i++) wval_free(&v->arr.items[i]);
        free((void *)v->arr.raw);
        free(v->arr.strs);
        free(v->arr.items);
    }
    memset(v, 0, sizeof *v);
}

void nbl_gguf_writer_free(nbl_gguf_writer *w) {
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free((char *)w->kv[i].key.ptr);
        wval_free(&w->kv[i].val);
    }
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* A private copy of len bytes, NUL-terminated for convenience; p may be NULL when len == 0. */
static char *dup_bytes(const char *p, uint64_t len) {
    if (len >= SIZE_MAX) return NULL;
    char *d = malloc((size_t)len + 1);
    if (!d) return NULL;
    if (len) memcpy(d, p, (size_t)len);
    d[len] = 0;
    return d;
}

static int scalar_in_range(const nbl_gguf_value *v) {
    switch (v->type) {
    case NBL_GGUF_UINT8: return v->u64 <= UINT8_MAX;
    case NBL_GGUF_UINT16: return v->u64 <= UINT16_MAX;
    case NBL_GGUF_UINT32: return v->u64 <= UINT32_MAX;
    case NBL_GGUF_BOOL: return v->u64 <= 1;
    case NBL_GGUF_INT8: return v->i64 >= INT8_MIN && v->i64 <= INT8_MAX;
    case NBL_GGUF_INT16: return v->i64 >= INT16_MIN && v->i64 <= INT16_MAX;
    case NBL_GGUF_INT32: return v->i64 >= INT32_MIN && v->i64 <= INT32_MAX;
    default: return 1;
    }
}

/* Validates src and deep-copies it into dst (zeroed on failure). The copy is built as a
 * value of the same shape, so the serializer handles reader values and writer values alike. */
static nbl_status wval_copy(nbl_gguf_value *dst, const nbl_gguf_value *src, int depth) {
    memset(dst, 0, sizeof *dst);
    if (src->type >= NBL_GGUF_TYPE_COUNT) return NBL_E_ARG;
    dst->type = src->type;
    if (src->type == NBL_GGUF_STRING) {
        if (!src->str.ptr && src->str.len) return NBL_E_ARG;
        dst->str.ptr = dup_bytes(src->str.ptr, src->str.len);
        dst->str.len = src->str.len;
        return dst->str.ptr ? NBL_OK : NBL_E_NOMEM;
    }
    if (src->type != NBL_GGUF_ARRAY) {
        if (!scalar_in_range(src)) return NBL_E_ARG;
        *dst = *src;
        return NBL_OK;
    }
    if (depth >= GGUF_MAX_DEPTH) return NBL_E_ARG;
    uint32_t et = src->arr.type;
    uint64_t n = src->arr.n, bytes;
    if (et >= NBL_GGUF_TYPE_COUNT) return NBL_E_ARG;
    dst->arr.type = et;
    if (n == 0) return NBL_OK;
    uint64_t esz = et == NBL_GGUF_STRING ? sizeof(nbl_str)
                 : et == NBL_GGUF_ARRAY  ? sizeof(nbl_gguf_value)
                                         : nbl_gguf_type_size(et);
    if (nbl_mul_ovf(n, esz, &bytes) || bytes > SIZE_MAX) return NBL_E_NOMEM;
    nbl_status s = NBL_OK;
    if (et == NBL_GGUF_STRING) {
        if (!src->arr.strs) return NBL_E_ARG;
        if (!(dst->arr.strs = calloc(1, (size_t)bytes))) return NBL_E_NOMEM;
        dst->arr.n = n; /* so a partial copy frees what it holds */
        for (uint64_t i = 0; i < n && !s; i++) {
            nbl_str in = src->arr.strs[i];
            if (!in.ptr && in.len) s = NBL_E_ARG;
            else if (!(dst->arr.strs[i].ptr = dup_bytes(in.ptr, in.len))) s = NBL_E_NOMEM;
            else dst->arr.strs[i].len = in.len;
        }
    } else if (et == NBL_GGUF_ARRAY) {
        if (!src->arr.items) return NBL_E_ARG;
        if (!(dst->arr.items = calloc(1, (size_t)bytes))) return NBL_E_NOMEM;
        dst->arr.n = n;
        for (uint64_t i = 0; i < n && !s; i++) {
            if (src->arr.items[i].type != NBL_GGUF_ARRAY) s = NBL_E_ARG;
            else s = wval_copy(&dst->arr.items[i], &src->arr.items[i], depth + 1);
        }
    } else {
        if (!src->arr.raw) return NBL_E_ARG;
        uint8_t *raw = malloc((size_t)bytes);
        if (!raw) return NBL_E_NOMEM;
        memcpy(raw, src->arr.raw, (size_t)bytes);
        dst->arr.raw = raw;
        dst->arr.n = n;
    }
    if (s) wval_free(dst);
    return s;
}

nbl_status nbl_gguf_writer_set_value(nbl_gguf_writer *w, const char *key, const nbl_gguf_value *v) {
    if (!w || !key || !v) return NBL_E_ARG;
    nbl_gguf_value copy;
    nbl_status s = wval_copy(&copy, v, 0);
    if (s) return s;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (nbl_str_eq(w->kv[i].key, key)) {
            wval_free(&w->kv[i].val);
            w->kv[i].val = copy;
            return NBL_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        nbl_gguf_kv *kv = cap <= SIZE_MAX / sizeof *kv ? realloc(w->kv, cap * sizeof *kv) : NULL;
        if (!kv) {
            wval_free(&copy);
            return NBL_E_NOMEM;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    size_t klen = strlen(key);
    char *k = dup_bytes(key, klen);
    if (!k) {
        wval_free(&copy);
        return NBL_E_NOMEM;
    }
    w->kv[w->n_kv].key = (nbl_str){k, klen};
    w->kv[w->n_kv].val = copy;
    w->n_kv++;
    return NBL_OK;
}

static nbl_status set_scalar(nbl_gguf_writer *w, const char *key, uint32_t type, uint64_t u) {
    nbl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = type;
    v.u64 = u;
    return nbl_gguf_writer_set_value(w, key, &v);
}

nbl_status nbl_gguf_writer_set_u32(nbl_gguf_writer *w, const char *key, uint32_t v) {
    return set_scalar(w, key, NBL_GGUF_UINT32, v);
}
nbl_status nbl_gguf_writer_set_i32(nbl_gguf_writer *w, const char *key, int32_t v) {
    return set_scalar(w, key, NBL_GGUF_INT32, (uint64_t)(int64_t)v);
}
nbl_status nbl_gguf_writer_set_u64(nbl_gguf_writer *w, const char *key, uint64_t v) {
    return set_scalar(w, key, NBL_GGUF_UINT64, v);
}
nbl_status nbl_gguf_writer_set_bool(nbl_gguf_writer *w, const char *key, bool v) {
    return set_scalar(w, key, NBL_GGUF_BOOL, v ? 1 : 0);
}
nbl_status nbl_gguf_writer_set_f32(nbl_gguf_writer *w, const char *key, float v) {
    nbl_gguf_value x;
    memset(&x, 0, sizeof x);
    x.type = NBL_GGUF_FLOAT32;
    x.f64 = v;
    return nbl_gguf_writer_set_value(w, key, &x);
}
nbl_status nbl_gguf_writer_set_str(nbl_gguf_writer *w, const char *key, const char *v) {
    if (!v) return NBL_E_ARG;
    nbl_gguf_value x;
    memset(&x, 0, sizeof x);
    x.type = NBL_GGUF_STRING;
    x.str = (nbl_str){v, strlen(v)};
    return nbl_gguf_writer_set_value(w, key, &x);
}

nbl_status nbl_gguf_writer_set_arr(nbl_gguf_writer *w, const char *key, uint32_t elem_type,
                                   const void *data, uint64_t n) {
    if (!nbl_gguf_type_size(elem_type)) return NBL_E_ARG;
    nbl_gguf_value x;
    memset(&x, 0, sizeof x);
    x.type = NBL_GGUF_ARRAY;
    x.arr.type = elem_type;
    x.arr.n = n;
    x.arr.raw = data;
    return nbl_gguf_writer_set_value(w, key, &x);
}

nbl_status nbl_gguf_writer_set_arr_str(nbl_gguf_writer *w, const char *key,
                                       const char *const *strs, uint64_t n) {
    if (!w || !key || (!strs && n)) return NBL_E_ARG;
    if (n > SIZE_MAX / sizeof(nbl_str)) return NBL_E_NOMEM;
    nbl_str *tmp = n ? malloc((size_t)n * sizeof(nbl_str)) : NULL;
    if (n && !tmp) return NBL_E_NOMEM;
    nbl_status s = NBL_OK;
    for (uint64_t i = 0; i < n && !s; i++) {
        if (!strs[i]) s = NBL_E_ARG;
        else tmp[i] = (nbl_str){strs[i], strlen(strs[i])};
    }
    if (!s) {
        nbl_gguf_value x;
        memset(&x, 0, sizeof x);
        x.type = NBL_GGUF_ARRAY;
        x.arr.type = NBL_GGUF_STRING;
        x.arr.n = n;
        x.arr.strs = tmp;
        s = nbl_gguf_writer_set_value(w, key, &x);
    }
    free(tmp);
    return s;
}

nbl_status nbl_gguf_writer_add_tensor(nbl_gguf_writer *w, const char *name, uint32_t type,
                                      uint32_t n_dims, const int64_t *ne, const void *data) {
    if (!w || !name || !ne || !data || n_dims < 1 || n_dims > 4) return NBL_E_ARG;
    const nbl_type_traits *tr = nbl_type_traits_get(type);
    if (!tr) return NBL_E_ARG;
    wtensor t;
    memset(&t, 0, sizeof t);
    t.type = type;
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (uint32_t d = 0; d < 4; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1 || nbl_mul_ovf(nel, (uint64_t)t.ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return NBL_E_ARG;
    }
    if (t.ne[0] % tr->blck) return NBL_E_ARG;
    uint64_t nb;
    if (nbl_mul_ovf((uint64_t)t.ne[0] / (uint64_t)tr->blck, (uint64_t)tr->type_size, &nb) ||
        nbl_mul_ovf(nb, (uint64_t)t.ne[1], &nb) || nbl_mul_ovf(nb, (uint64_t)t.ne[2], &nb) ||
        nbl_mul_ovf(nb, (uint64_t)t.ne[3], &nb) || nb > SIZE_MAX)
        return NBL_E_ARG;
    t.nbytes = nb;
    t.data = data;
    for (uint64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return NBL_E_ARG;
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *nt = cap <= SIZE_MAX / sizeof *nt ? realloc(w->t, cap * sizeof *nt) : NULL;
        if (!nt) return NBL_E_NOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    if (!(t.name = dup_bytes(name, strlen(name)))) return NBL_E_NOMEM;
    w->t[w->n_t++] = t;
    return NBL_OK;
}

/* Serialization goes through a sink that counts (neither buf nor f), fills a buffer, or
 * streams to a file, so the sizes computed and the bytes written cannot disagree. */
typedef struct sink {
    uint8_t *buf;
    FILE *f;
    uint64_t pos;
    int failed;
} sink;

static void put(sink *k, const void *p, uint64_t n) {
    if (!n) return;
    if (k->buf) memcpy(k->buf + k->pos, p, (size_t)n);
    else if (k->f && !k->failed && fwrite(p, 1, (size_t)n, k->f) != n) k->failed = 1;
    k->pos += n;
}

static void put_le(sink *k, uint64_t v, unsigned n) {
    uint8_t b[8];
    for (unsigned i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(k, b, n);
}

static void put_str(sink *k, nbl_str s) {
    put_le(k, s.len, 8);
    put(k, s.ptr, s.len);
}

static void put_zeros(sink *k, uint64_t n) {
    static const uint8_t z[256];
    while (n) {
        uint64_t c = n < sizeof z ? n : sizeof z;
        put(k, z, c);
        n -= c;
    }
}

static void put_value(sink *k, const nbl_gguf_value *v) {
    uint32_t sz = nbl_gguf_type_size(v->type);
    if (v->type == NBL_GGUF_STRING) {
        put_str(k, v->str);
    } else if (v->type == NBL_GGUF_ARRAY) {
        put_le(k, v->arr.type, 4);
        put_le(k, v->arr.n, 8);
        if (v->arr.type == NBL_GGUF_STRING)
            for (uint64_t i = 0; i < v->arr.n; i++) put_str(k, v->arr.strs[i]);
        else if (v->arr.type == NBL_GGUF_ARRAY)
            for (uint64_t i = 0; i < v->arr.n; i++) put_value(k, &v->arr.items[i]);
        else
            put(k, v->arr.raw, v->arr.n * nbl_gguf_type_size(v->arr.type));
    } else if (v->type == NBL_GGUF_FLOAT32) {
        float f = (float)v->f64;
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(k, u, 4);
    } else if (v->type == NBL_GGUF_FLOAT64) {
        uint64_t u;
        memcpy(&u, &v->f64, 8);
        put_le(k, u, 8);
    } else {
        put_le(k, v->u64, sz); /* two's complement: i64 and u64 share the low bytes */
    }
}

/* Alignment from general.alignment (uint32, a nonzero power of two) or the default. */
static nbl_status writer_alignment(const nbl_gguf_writer *w, uint64_t *align, nbl_error *err) {
    *align = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        if (!nbl_str_eq(w->kv[i].key, "general.alignment")) continue;
        const nbl_gguf_value *v = &w->kv[i].val;
        if (v->type != NBL_GGUF_UINT32 || v->u64 == 0 || (v->u64 & (v->u64 - 1)))
            return nbl_set_err(err, NBL_E_ARG,
                               "gguf: key 'general.alignment' must be a uint32 power of two");
        *align = v->u64;
    }
    return NBL_OK;
}

static uint64_t pad_to(uint64_t pos, uint64_t a) { return (a - pos % a) % a; }

/* Lays out tensor offsets; returns the data section's size, or fails if it overflows. */
static nbl_status layout(nbl_gguf_writer *w, uint64_t align, uint64_t *data_size, nbl_error *err) {
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (nbl_add_ovf(off, w->t[i].nbytes, &off) || nbl_add_ovf(off, pad_to(off, align), &off))
            return nbl_set_err(err, NBL_E_NOMEM, "gguf: tensor data too large");
    }
    *data_size = off;
    return NBL_OK;
}

static void serialize(const nbl_gguf_writer *w, uint64_t align, sink *k) {
    put(k, GGUF_MAGIC, 4);
    put_le(k, 3, 4);
    put_le(k, w->n_t, 8);
    put_le(k, w->n_kv, 8);
    for (uint64_t i = 0; i < w->n_kv; i++) {
        put_str(k, w->kv[i].key);
        put_le(k, w->kv[i].val.type, 4);
        put_value(k, &w->kv[i].val);
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        put_str(k, (nbl_str){t->name, strlen(t->name)});
        put_le(k, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(k, (uint64_t)t->ne[d], 8);
        put_le(k, t->type, 4);
        put_le(k, t->offset, 8);
    }
    put_zeros(k, pad_to(k->pos, align));
    for (uint64_t i = 0; i < w->n_t; i++) {
        put(k, w->t[i].data, w->t[i].nbytes);
        put_zeros(k, pad_to(w->t[i].nbytes, align));
    }
}

nbl_status nbl_gguf_writer_write_mem(nbl_gguf_writer *w, uint8_t **out, size_t *size,
                                     nbl_error *err) {
    if (!w || !out || !size) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    *out = NULL;
    *size = 0;
    uint64_t align, data_size;
    nbl_status s = writer_alignment(w, &align, err);
    if (!s) s = layout(w, align, &data_size, err);
    if (s) return s;
    sink count = {0};
    serialize(w, align, &count);
    if (count.pos > SIZE_MAX) return nbl_set_err(err, NBL_E_NOMEM, "gguf: output too large");
    sink k = {.buf = malloc(count.pos ? (size_t)count.pos : 1)};
    if (!k.buf) return nbl_set_err(err, NBL_E_NOMEM, "gguf: out of memory for %llu bytes",
                                   (unsigned long long)count.pos);
    serialize(w, align, &k);
    NBL_ASSERT(k.pos == count.pos);
    *out = k.buf;
    *size = (size_t)k.pos;
    return NBL_OK;
}

/* Writes to a temporary file beside path and renames it into place, so a failure never
 * leaves a partial file under the final name. */
nbl_status nbl_gguf_writer_write_file(nbl_gguf_writer *w, const char *path, nbl_error *err) {
    if (!w || !path) return nbl_set_err(err, NBL_E_ARG, "gguf: NULL argument");
    uint64_t align, data_size;
    nbl_status s = writer_alignment(w, &align, err);
    if (!s) s = layout(w, align, &data_size, err);
    if (s) return s;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return nbl_set_err(err, NBL_E_NOMEM, "gguf: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        s = nbl_set_err(err, NBL_E_IO, "gguf: cannot create a temporary file for '%s': %s", path,
                        strerror(errno));
        free(tmp);
        return s;
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would make a model file private to its writer */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return nbl_set_err(err, NBL_E_IO, "gguf: cannot write '%s': %s", path, strerror(e));
    }
    sink k = {.f = f};
    errno = 0;
    serialize(w, align, &k);
    int e = 0;
    if (k.failed || fflush(f) != 0 || fsync(fd) != 0) e = errno ? errno : EIO;
    if (fclose(f) != 0 && !e) e = errno ? errno : EIO;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        s = nbl_set_err(err, NBL_E_IO, "gguf: cannot write '%s': %s", path, strerror(e));
    }
    free(tmp);
    return s;
}
