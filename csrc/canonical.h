/*
 * The canonical envelope of a peoplelog version (RFC 8785 JSON, docs/FORMAT.md) and its
 * CID, in C: shared by ledger/_native.c (one record) and projections/_native.c (a COPY
 * stream of them). Both are held to the Python definition in ledger/_cid.py by tests.
 */
#ifndef PEOPLELOG_CANONICAL_H
#define PEOPLELOG_CANONICAL_H

#define PY_SSIZE_T_CLEAN
#define OPENSSL_API_COMPAT 0x10100000L
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define CID_TEXT_LEN 59
#define CID_RAW_LEN 36

static const unsigned char CID_PREFIX[4] = {0x01, 0x55, 0x12, 0x20};
static const char BASE32[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char BASE64URL[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char HEX[] = "0123456789abcdef";

/* SHA-256 through the context API: OpenSSL 3's one-shot SHA256() fetches the algorithm on
 * every call, which doubles its time on inputs of a few hundred bytes. */
static inline void sha256(const void *data, size_t len, unsigned char *out) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, data, len);
    SHA256_Final(out, &ctx);
}

/* ---------------------------------------------------------------- growable buffer */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static inline int buf_reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    char *data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

static inline void buf_free(Buf *b) {
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- encoders */

/* Text or bytes; len -1 is JSON null. */
typedef struct {
    const char *ptr;
    Py_ssize_t len;
} Span;

static inline void uuid_text(const char *raw, char *out) {
    const unsigned char *u = (const unsigned char *)raw;
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = HEX[u[i] >> 4];
        out[o++] = HEX[u[i] & 15];
    }
}

/* "b" + base32lower(prefix + digest), unpadded: 59 characters. */
static inline void cid_text(const unsigned char *digest, char *out) {
    unsigned char raw[CID_RAW_LEN];
    memcpy(raw, CID_PREFIX, 4);
    memcpy(raw + 4, digest, 32);
    out[0] = 'b';
    int o = 1;
    uint32_t acc = 0;
    int bits = 0;
    for (int i = 0; i < CID_RAW_LEN; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = BASE32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0) out[o++] = BASE32[(acc << (5 - bits)) & 31];
}

/* The 36 raw bytes of a canonical 'bafkrei...' CID; 0 when the text is not one. */
static inline int cid_raw(const char *text, Py_ssize_t len, unsigned char *raw) {
    if (len != CID_TEXT_LEN || text[0] != 'b') return 0;
    uint32_t acc = 0;
    int bits = 0, o = 0;
    for (Py_ssize_t i = 1; i < len; i++) {
        char c = text[i];
        int v;
        if (c >= 'a' && c <= 'z') v = c - 'a';
        else if (c >= '2' && c <= '7') v = c - '2' + 26;
        else return 0;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            raw[o++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    if (o != CID_RAW_LEN || (acc & ((1u << bits) - 1)) != 0) return 0;
    return memcmp(raw, CID_PREFIX, 4) == 0;
}

static inline int put_json_string(Buf *b, const char *s, Py_ssize_t n) {
    if (buf_reserve(b, n * 6 + 2) < 0) return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c >= 0x20) {
            *o++ = (char)c;
        } else {
            *o++ = '\\';
            switch (c) {
                case '\b': *o++ = 'b'; break;
                case '\f': *o++ = 'f'; break;
                case '\n': *o++ = 'n'; break;
                case '\r': *o++ = 'r'; break;
                case '\t': *o++ = 't'; break;
                default:
                    *o++ = 'u';
                    *o++ = '0';
                    *o++ = '0';
                    *o++ = HEX[c >> 4];
                    *o++ = HEX[c & 15];
            }
        }
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}

static inline int put_b64_or_null(Buf *b, Span f) {
    if (f.len < 0) return buf_put(b, "null", 4);
    Py_ssize_t n = f.len;
    if (buf_reserve(b, (n + 2) / 3 * 4 + 2) < 0) return -1;
    const unsigned char *s = (const unsigned char *)f.ptr;
    char *o = b->data + b->len;
    *o++ = '"';
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = BASE64URL[v >> 18];
        *o++ = BASE64URL[(v >> 12) & 63];
        *o++ = BASE64URL[(v >> 6) & 63];
        *o++ = BASE64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = BASE64URL[v >> 18];
        *o++ = BASE64URL[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = BASE64URL[v >> 18];
        *o++ = BASE64URL[(v >> 12) & 63];
        *o++ = BASE64URL[(v >> 6) & 63];
    }
    *o++ = '"';
    b->len = o - b->data;
    return 0;
}

static inline int put_int(Buf *b, int64_t v) {
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    return buf_put(b, tmp, n);
}

static inline int put_text_or_null(Buf *b, Span s) {
    if (s.len < 0) return buf_put(b, "null", 4);
    return put_json_string(b, s.ptr, s.len);
}

/* The fields of an envelope as stored: ciphertexts raw, timestamps in Unix microseconds. */
typedef struct {
    const char *person_id; /* 16 raw bytes */
    int64_t version, format, recorded_at, verified_at;
    int has_verified_at;
    Span prev, op, actor, reason, email, name, password;
} Envelope;

/* Canonical bytes into `scratch` (reset first), then the CID text into `out`. */
static inline int envelope_cid_text(Buf *scratch, const Envelope *e, char *out) {
    Buf *b = scratch;
    char pid[36];
    uuid_text(e->person_id, pid);
    b->len = 0;
    if (buf_put(b, "{\"actor\":", 9) < 0 || put_text_or_null(b, e->actor) < 0
        || buf_put(b, ",\"email\":", 9) < 0 || put_b64_or_null(b, e->email) < 0
        || buf_put(b, ",\"format\":", 10) < 0 || put_int(b, e->format) < 0
        || buf_put(b, ",\"name\":", 8) < 0 || put_b64_or_null(b, e->name) < 0
        || buf_put(b, ",\"op\":", 6) < 0 || put_text_or_null(b, e->op) < 0
        || buf_put(b, ",\"password\":", 12) < 0 || put_b64_or_null(b, e->password) < 0
        || buf_put(b, ",\"person_id\":\"", 14) < 0 || buf_put(b, pid, 36) < 0
        || buf_put(b, "\",\"prev\":", 9) < 0 || put_text_or_null(b, e->prev) < 0
        || buf_put(b, ",\"reason\":", 10) < 0 || put_text_or_null(b, e->reason) < 0
        || buf_put(b, ",\"recorded_at\":", 15) < 0 || put_int(b, e->recorded_at) < 0
        || buf_put(b, ",\"verified_at\":", 15) < 0
        || (e->has_verified_at ? put_int(b, e->verified_at) : buf_put(b, "null", 4)) < 0
        || buf_put(b, ",\"version\":", 11) < 0 || put_int(b, e->version) < 0
        || buf_put(b, "}", 1) < 0)
        return -1;
    unsigned char digest[32];
    sha256(b->data, (size_t)b->len, digest);
    cid_text(digest, out);
    return 0;
}

#endif
