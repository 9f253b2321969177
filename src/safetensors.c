/* safetensors.c — reader for Hugging Face safetensors checkpoints (one file, or shards listed
 * by model.safetensors.index.json), memory-mapped. Headers are untrusted: every offset, shape
 * and length is checked against the file before a tensor is exposed. */
#include "nbl_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format's own limit on the JSON header; larger is an attack or corruption. */
#define ST_MAX_HEADER (100u << 20)
#define ST_MAX_FILES 4096

typedef struct st_file {
    char *name;          /* as given (shard name or path), for messages */
    const uint8_t *base; /* whole file */
    size_t size;
    void *map;           /* mmap'd region, or NULL for caller buffers */
} st_file;

struct nbl_st {
    st_file *files;
    size_t n_files;
    nbl_st_tensor *t; /* sorted by name */
    size_t n, cap;
    char **names;     /* owned tensor names, n of them (parallel to insertion, freed as a set) */
    size_t n_names;
};

static const struct {
    const char *name;
    uint32_t dtype, size;
} DTYPES[] = {
    {"F32", NBL_ST_F32, 4},     {"F16", NBL_ST_F16, 2},         {"BF16", NBL_ST_BF16, 2},
    {"F64", NBL_ST_F64, 8},     {"I64", NBL_ST_I64, 8},         {"U64", NBL_ST_U64, 8},
    {"I32", NBL_ST_I32, 4},     {"U32", NBL_ST_U32, 4},         {"I16", NBL_ST_I16, 2},
    {"U16", NBL_ST_U16, 2},     {"I8", NBL_ST_I8, 1},           {"U8", NBL_ST_U8, 1},
    {"BOOL", NBL_ST_BOOL, 1},   {"F8_E4M3", NBL_ST_F8_E4M3, 1}, {"F8_E5M2", NBL_ST_F8_E5M2, 1},
};

const char *nbl_st_dtype_name(uint32_t dtype) {
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].name;
    return "?";
}

void nbl_st_free(nbl_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].name);
    }
    for (size_t i = 0; i < st->n_names; i++) free(st->names[i]);
    free(st->names);
    free(st->files);
    free(st->t);
    free(st);
}

static nbl_st *st_new(void) { return calloc(1, sizeof(nbl_st)); }

static nbl_status add_file(nbl_st *st, const char *name, const uint8_t *base, size_t size,
                           void *map, size_t *idx, nbl_error *err) {
    st_file *nf = realloc(st->files, (st->n_files + 1) * sizeof *nf);
    if (!nf) goto nomem;
    st->files = nf;
    char *nm = strdup(name);
    if (!nm) goto nomem;
    st->files[st->n_files] = (st_file){nm, base, size, map};
    *idx = st->n_files++;
    return NBL_OK;
nomem:
    if (map) munmap(map, size);
    return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
}

/* A JSON number that is an exact non-negative integer below 2^53 (beyond that a double has
 * already lost the value, so it cannot be trusted as an offset). */
static int json_u64(const nbl_json *j, uint64_t *out) {
    if (!j || j->type != NBL_JSON_NUMBER) return 0;
    double v = j->num;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static nbl_status parse_entry(nbl_st *st, size_t fi, const char *name, const nbl_json *e,
                              const uint8_t *data, uint64_t data_size, nbl_error *err) {
    const char *fn = st->files[fi].name;
    if (e->type != NBL_JSON_OBJECT)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': header entry is not an object",
                           fn, name);
    const nbl_json *jd = nbl_json_get(e, "dtype"), *js = nbl_json_get(e, "shape"),
                   *jo = nbl_json_get(e, "data_offsets");
    if (!jd || jd->type != NBL_JSON_STRING)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': missing or non-string dtype",
                           fn, name);
    uint32_t dtype = 0, esize = 0;
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(jd->str, DTYPES[i].name) == 0) dtype = DTYPES[i].dtype, esize = DTYPES[i].size;
    if (!esize)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': unknown dtype '%.32s'", fn, name,
                           jd->str);
    if (!js || js->type != NBL_JSON_ARRAY)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': missing shape array", fn, name);
    if (js->len > NBL_ST_MAX_DIMS)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", fn,
                           name, js->len, NBL_ST_MAX_DIMS);
    nbl_st_tensor t = {0};
    t.dtype = dtype;
    t.elem_size = esize;
    t.n_dims = (uint32_t)js->len;
    uint64_t numel = 1;
    for (size_t d = 0; d < js->len; d++) {
        uint64_t v;
        if (!json_u64(&js->items[d], &v) || v > INT64_MAX)
            return nbl_set_err(err, NBL_E_FORMAT,
                               "%s: tensor '%s': shape[%zu] is not a non-negative integer", fn,
                               name, d);
        t.shape[d] = (int64_t)v;
        if (nbl_mul_ovf(numel, v, &numel))
            return nbl_set_err(err, NBL_E_FORMAT, "%s: tensor '%s': shape overflows", fn, name);
    }
    uint64_t a, b, nbytes;
    if (!jo || jo->type != NBL_JSON_ARRAY || jo->len != 2 || !json_u64(&jo->items[0], &a) ||
        !json_u64(&jo->items[1], &b))
        return nbl_set_err(err, NBL_E_FORMAT,
                           "%s: tensor '%s': data_offsets must be two non-negative integers", fn,
                           name);
    if (b < a || b > data_size)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] outside the %llu-byte data "
                           "section",
                           fn, name, (unsigned long long)a, (unsigned long long)b,
                           (unsigned long long)data_size);
    if (nbl_mul_ovf(numel, esize, &nbytes) || nbytes != b - a)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "%s: tensor '%s': shape needs %llu elements of %u bytes but "
                           "data_offsets span %llu bytes",
                           fn, name, (unsigned long long)numel, esize,
                           (unsigned long long)(b - a));
    t.numel = numel;
    t.nbytes = nbytes;
    t.data = data + a;
    t.file = fn;
    if (st->n == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 64;
        nbl_st_tensor *nt = realloc(st->t, nc * sizeof *nt);
        char **nn = realloc(st->names, nc * sizeof *nn);
        if (nt) st->t = nt;
        if (nn) st->names = nn;
        if (!nt || !nn) return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
        st->cap = nc;
    }
    char *nm = strdup(name);
    if (!nm) return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
    st->names[st->n_names++] = nm;
    t.name = nm;
    st->t[st->n++] = t;
    return NBL_OK;
}

/* Parses the header of file fi (already registered in st) and appends its tensors. */
static nbl_status parse_file(nbl_st *st, size_t fi, nbl_error *err) {
    const st_file *f = &st->files[fi];
    if (f->size < 8)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "%s: %zu bytes is too short for a safetensors header length", f->name,
                           f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > f->size - 8)
        return nbl_set_err(err, NBL_E_FORMAT,
                           "%s: header length %llu runs past the end of the %zu-byte file",
                           f->name, (unsigned long long)hlen, f->size);
    if (hlen > ST_MAX_HEADER || hlen < 2)
        return nbl_set_err(err, NBL_E_FORMAT, "%s: implausible header length %llu", f->name,
                           (unsigned long long)hlen);
    nbl_error jerr = {0};
    nbl_json *h = nbl_json_parse((const char *)f->base + 8, (size_t)hlen, &jerr);
    if (!h)
        return nbl_set_err(err, jerr.code == NBL_E_NOMEM ? NBL_E_NOMEM : NBL_E_FORMAT,
                           "%s: header: %s", f->name, jerr.msg);
    nbl_status s = NBL_OK;
    if (h->type != NBL_JSON_OBJECT) {
        s = nbl_set_err(err, NBL_E_FORMAT, "%s: header is not a JSON object", f->name);
    } else {
        const uint8_t *data = f->base + 8 + hlen;
        uint64_t data_size = f->size - 8 - hlen;
        for (size_t i = 0; i < h->len && !s; i++) {
            const char *k = h->keys[i];
            if (strcmp(k, "__metadata__") == 0) continue;
            if (strlen(k) == 0 || strlen(k) > 1024)
                s = nbl_set_err(err, NBL_E_FORMAT, "%s: tensor name empty or too long", f->name);
            else
                s = parse_entry(st, fi, k, &h->items[i], data, data_size, err);
        }
    }
    nbl_json_free(h);
    return s;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const nbl_st_tensor *)a)->name, ((const nbl_st_tensor *)b)->name);
}

static nbl_status finish(nbl_st *st, nbl_error *err) {
    if (st->n) qsort(st->t, st->n, sizeof *st->t, cmp_tensor);
    for (size_t i = 1; i < st->n; i++)
        if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
            return nbl_set_err(err, NBL_E_FORMAT, "tensor '%s' appears in both %s and %s",
                               st->t[i].name, st->t[i - 1].file, st->t[i].file);
    return NBL_OK;
}

static nbl_status map_file(nbl_st *st, const char *path, const char *label, size_t *idx,
                           nbl_error *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return nbl_set_err(err, NBL_E_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return nbl_set_err(err, NBL_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return nbl_set_err(err, NBL_E_NOMEM, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    const uint8_t *base = (const uint8_t *)"";
    if (size) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return nbl_set_err(err, NBL_E_IO, "cannot map %s: %s", path, strerror(errno));
        }
        base = map;
    }
    close(fd);
    return add_file(st, label, base, size, map, idx, err);
}

nbl_status nbl_st_open_buffer(const void *data, size_t size, const char *label, nbl_st **out,
                              nbl_error *err) {
    if (!out || (!data && size)) return nbl_set_err(err, NBL_E_ARG, "safetensors: NULL argument");
    *out = NULL;
    nbl_st *st = st_new();
    if (!st) return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
    size_t fi;
    nbl_status s = add_file(st, label ? label : "<buffer>", data ? data : (const void *)"", size,
                            NULL, &fi, err);
    if (!s) s = parse_file(st, fi, err);
    if (!s) s = finish(st, err);
    if (s) {
        nbl_st_free(st);
        return s;
    }
    *out = st;
    return NBL_OK;
}

nbl_status nbl_st_open_file(const char *path, nbl_st **out, nbl_error *err) {
    if (!out || !path) return nbl_set_err(err, NBL_E_ARG, "safetensors: NULL argument");
    *out = NULL;
    nbl_st *st = st_new();
    if (!st) return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
    size_t fi;
    nbl_status s = map_file(st, path, path, &fi, err);
    if (!s) s = parse_file(st, fi, err);
    if (!s) s = finish(st, err);
    if (s) {
        nbl_st_free(st);
        return s;
    }
    *out = st;
    return NBL_OK;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* Shard names come from an untrusted index: only plain file names inside the directory. */
static int safe_shard_name(const char *s, size_t len) {
    if (len == 0 || len > 255 || s[0] == '.' || strlen(s) != len) return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || s[i] == '\\') return 0;
    return 1;
}

static nbl_status open_sharded(nbl_st *st, const char *dir, const char *index_path,
                               nbl_error *err) {
    size_t len;
    char *text = nbl_read_file(index_path, &len, err);
    if (!text) return err ? err->code : NBL_E_IO;
    nbl_error jerr = {0};
    nbl_json *idx = nbl_json_parse(text, len, &jerr);
    free(text);
    if (!idx)
        return nbl_set_err(err, jerr.code == NBL_E_NOMEM ? NBL_E_NOMEM : NBL_E_FORMAT,
                           "model.safetensors.index.json: %s", jerr.msg);
    nbl_status s = NBL_OK;
    const nbl_json *wm = nbl_json_get(idx, "weight_map");
    if (!wm || wm->type != NBL_JSON_OBJECT || wm->len == 0) {
        s = nbl_set_err(err, NBL_E_FORMAT,
                        "model.safetensors.index.json: missing or empty weight_map object");
        goto done;
    }
    /* Open each distinct shard once, in order of first mention. */
    for (size_t i = 0; i < wm->len && !s; i++) {
        const nbl_json *v = &wm->items[i];
        if (v->type != NBL_JSON_STRING || !safe_shard_name(v->str, v->len)) {
            s = nbl_set_err(err, NBL_E_FORMAT,
                            "model.safetensors.index.json: tensor '%s' maps to an invalid shard "
                            "file name",
                            wm->keys[i]);
            break;
        }
        int seen = 0;
        for (size_t f = 0; f < st->n_files && !seen; f++) seen = !strcmp(st->files[f].name, v->str);
        if (seen) continue;
        if (st->n_files >= ST_MAX_FILES) {
            s = nbl_set_err(err, NBL_E_FORMAT, "model.safetensors.index.json: too many shards");
            break;
        }
        char *p = join_path(dir, v->str);
        if (!p) {
            s = nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
            break;
        }
        size_t fi;
        s = map_file(st, p, v->str, &fi, err);
        free(p);
        if (!s) s = parse_file(st, fi, err);
    }
    if (!s) s = finish(st, err);
    /* Every tensor the index promises must be in the shard it names. */
    for (size_t i = 0; i < wm->len && !s; i++) {
        const nbl_st_tensor *t = nbl_st_find(st, wm->keys[i]);
        if (!t)
            s = nbl_set_err(err, NBL_E_FORMAT,
                            "model.safetensors.index.json lists tensor '%s' but %s does not "
                            "contain it",
                            wm->keys[i], wm->items[i].str);
        else if (strcmp(t->file, wm->items[i].str) != 0)
            s = nbl_set_err(err, NBL_E_FORMAT,
                            "model.safetensors.index.json puts tensor '%s' in %s but it is in %s",
                            wm->keys[i], wm->items[i].str, t->file);
    }
done:
    nbl_json_free(idx);
    return s;
}

nbl_status nbl_st_open_dir(const char *dir, nbl_st **out, nbl_error *err) {
    if (!out || !dir) return nbl_set_err(err, NBL_E_ARG, "safetensors: NULL argument");
    *out = NULL;
    nbl_st *st = st_new();
    if (!st) return nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
    char *index = join_path(dir, "model.safetensors.index.json");
    char *single = join_path(dir, "model.safetensors");
    nbl_status s = NBL_OK;
    if (!index || !single) {
        s = nbl_set_err(err, NBL_E_NOMEM, "safetensors: out of memory");
    } else if (access(index, F_OK) == 0) {
        s = open_sharded(st, dir, index, err);
    } else if (access(single, F_OK) == 0) {
        size_t fi;
        s = map_file(st, single, "model.safetensors", &fi, err);
        if (!s) s = parse_file(st, fi, err);
        if (!s) s = finish(st, err);
    } else {
        s = nbl_set_err(err, NBL_E_IO,
                        "%s: neither model.safetensors nor model.safetensors.index.json found",
                        dir);
    }
    free(index);
    free(single);
    if (s) {
        nbl_st_free(st);
        return s;
    }
    *out = st;
    return NBL_OK;
}

uint64_t nbl_st_count(const nbl_st *st) { return st ? st->n : 0; }

const nbl_st_tensor *nbl_st_at(const nbl_st *st, uint64_t i) {
    return st && i < st->n ? &st->t[i] : NULL;
}

const nbl_st_tensor *nbl_st_find(const nbl_st *st, const char *name) {
    if (!st || !name || !st->n) return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->t[mid].name, name);
        if (c == 0) return &st->t[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int nbl_st_is_float(uint32_t dtype) {
    return dtype == NBL_ST_F32 || dtype == NBL_ST_F16 || dtype == NBL_ST_BF16;
}

/* Shards put tensors at arbitrary byte offsets, so elements are read with memcpy, never through
 * a cast pointer that might be misaligned. */
void nbl_st_read_f32(const nbl_st_tensor *t, uint64_t first, uint64_t n, float *dst) {
    NBL_ASSERT(nbl_st_is_float(t->dtype) && first <= t->numel && n <= t->numel - first);
    const uint8_t *p = t->data + first * t->elem_size;
    switch (t->dtype) {
    case NBL_ST_F32:
        memcpy(dst, p, n * sizeof(float));
        break;
    case NBL_ST_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = nbl_fp16_to_f32(h);
        }
        break;
    default:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = nbl_bf16_to_f32(h);
        }
        break;
    }
}
