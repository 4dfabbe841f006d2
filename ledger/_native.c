/*
 * The CID of one version in C: the canonical envelope of csrc/canonical.h, hashed.
 * ledger/_cid.py falls back to its Python definition for anything unusual (a value of the
 * wrong type or out of range): the two are held equal by tests/test_cid.py.
 *
 * NewPersonRows lays out a bulk import's new person (version 0) as binary COPY tuples with
 * its CID and the writer's seals (of the CID, and of the email claim), from constant
 * segments ledger/_import/_sealing.py builds: the same bytes as the Python layout there
 * (tests/test_import_pipeline.py holds the two equal).
 */
#include "canonical.h"
#include <openssl/crypto.h>

#define SAFE_INTEGER INT64_C(9007199254740991) /* 2**53 - 1: JSON's exact integers */

/* Reused for every call: only touched while holding the GIL, grows to the largest envelope. */
static Buf scratch;

static int exact_int(PyObject *o, int64_t *out) {
    if (!PyLong_CheckExact(o)) {
        PyErr_SetString(PyExc_TypeError, "envelope integers must be int");
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow || v > SAFE_INTEGER || v < -SAFE_INTEGER) {
        PyErr_SetString(PyExc_OverflowError, "envelope integers must be exact (|n| < 2**53)");
        return -1;
    }
    *out = v;
    return 0;
}

static int text_span(PyObject *o, Span *out, int nullable) {
    if (o == Py_None && nullable) {
        out->ptr = NULL;
        out->len = -1;
        return 0;
    }
    if (!PyUnicode_CheckExact(o)) {
        PyErr_SetString(PyExc_TypeError, "envelope text must be str");
        return -1;
    }
    out->ptr = PyUnicode_AsUTF8AndSize(o, &out->len);
    return out->ptr == NULL ? -1 : 0;
}

static int bytes_span(PyObject *o, Span *out) {
    if (o == Py_None) {
        out->ptr = NULL;
        out->len = -1;
        return 0;
    }
    if (!PyBytes_CheckExact(o)) {
        PyErr_SetString(PyExc_TypeError, "envelope byte fields must be bytes");
        return -1;
    }
    out->ptr = PyBytes_AS_STRING(o);
    out->len = PyBytes_GET_SIZE(o);
    return 0;
}

/* envelope_cid(person_id_bytes, version, prev, op, recorded_at, actor, reason, email, name,
                password, verified_at, format) -> str */
static PyObject *envelope_cid(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "envelope_cid takes 12 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]) || PyBytes_GET_SIZE(args[0]) != 16) {
        PyErr_SetString(PyExc_TypeError, "person_id must be 16 bytes");
        return NULL;
    }
    Envelope e = {.person_id = PyBytes_AS_STRING(args[0])};
    if (exact_int(args[1], &e.version) < 0 || text_span(args[2], &e.prev, 1) < 0
        || text_span(args[3], &e.op, 0) < 0 || exact_int(args[4], &e.recorded_at) < 0
        || text_span(args[5], &e.actor, 1) < 0 || text_span(args[6], &e.reason, 1) < 0
        || bytes_span(args[7], &e.email) < 0 || bytes_span(args[8], &e.name) < 0
        || bytes_span(args[9], &e.password) < 0 || exact_int(args[11], &e.format) < 0)
        return NULL;
    e.has_verified_at = args[10] != Py_None;
    if (e.has_verified_at && exact_int(args[10], &e.verified_at) < 0) return NULL;
    char out[CID_TEXT_LEN];
    if (envelope_cid_text(&scratch, &e, out) < 0) return NULL;
    return PyUnicode_FromStringAndSize(out, CID_TEXT_LEN);
}

/* ---------------------------------------------------------------- NewPersonRows */

#define PG_EPOCH INT64_C(946684800000000) /* Unix microseconds at 2000-01-01 UTC */
#define SEGMENTS 15

/* HMAC-SHA256 (RFC 2104) with the key's two padded blocks hashed once: each message copies
 * the two states (fields/_keyed.py is the Python definition). */
typedef struct {
    SHA256_CTX inner, outer;
} Hmac;

static void hmac_init(Hmac *h, const unsigned char *key, size_t len) {
    unsigned char block[64] = {0}, pad[64];
    if (len > 64)
        sha256(key, len, block);
    else
        memcpy(block, key, len);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&h->inner);
    SHA256_Update(&h->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5C;
    SHA256_Init(&h->outer);
    SHA256_Update(&h->outer, pad, 64);
}

/* The HMAC of the concatenation of n parts. */
static void hmac_of(const Hmac *h, const Span *parts, int n, unsigned char out[32]) {
    SHA256_CTX ctx = h->inner;
    for (int i = 0; i < n; i++) SHA256_Update(&ctx, parts[i].ptr, (size_t)parts[i].len);
    unsigned char inner[32];
    SHA256_Final(inner, &ctx);
    ctx = h->outer;
    SHA256_Update(&ctx, inner, 32);
    SHA256_Final(out, &ctx);
}

static const char ATTEST_LABEL[] = "peoplelog/attest/1"; /* + its NUL: fields/_attest.py */
static const char CLAIM_LABEL[] = "peoplelog/claim/1";

typedef struct {
    PyObject_HEAD
    /* keys a b | people a b c d | latest a b c | lookup a b c | ids a b c */
    PyObject *segment[SEGMENTS];
    PyObject *op, *actor, *reason; /* str, str or None, str or None */
    Span op_span, actor_span, reason_span;
    int64_t format;
    PyObject *writer_field; /* the writer key's id as a text field, or NULL: no seals */
    Hmac writer;
    int ready;
} NewPersonRows;

static void rows_dealloc(NewPersonRows *self) {
    for (int i = 0; i < SEGMENTS; i++) Py_XDECREF(self->segment[i]);
    Py_XDECREF(self->op);
    Py_XDECREF(self->actor);
    Py_XDECREF(self->reason);
    Py_XDECREF(self->writer_field);
    OPENSSL_cleanse(&self->writer, sizeof self->writer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* NewPersonRows(segments: tuple[bytes, ...15], op, actor, reason, format,
                 writer_field=None, writer_secret=None): with the writer key (its id as a text
                 field, and its secret), people and lookup tuples end with its seals. */
static int rows_init(NewPersonRows *self, PyObject *args, PyObject *kwds) {
    PyObject *segments, *op, *actor, *reason, *format, *writer_field = Py_None;
    Py_buffer secret = {0};
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "NewPersonRows is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O!OOOO|Oz*:NewPersonRows", &PyTuple_Type, &segments, &op,
                          &actor, &reason, &format, &writer_field, &secret))
        return -1;
    if ((writer_field != Py_None) != (secret.buf != NULL)
        || (writer_field != Py_None && !PyBytes_CheckExact(writer_field))) {
        PyBuffer_Release(&secret);
        PyErr_SetString(PyExc_TypeError, "give the writer's field (bytes) and secret, or neither");
        return -1;
    }
    if (secret.buf != NULL) {
        hmac_init(&self->writer, secret.buf, (size_t)secret.len);
        self->writer_field = Py_NewRef(writer_field);
    }
    PyBuffer_Release(&secret);
    if (PyTuple_GET_SIZE(segments) != SEGMENTS) {
        PyErr_SetString(PyExc_ValueError, "NewPersonRows takes 15 segments");
        return -1;
    }
    for (int i = 0; i < SEGMENTS; i++) {
        PyObject *segment = PyTuple_GET_ITEM(segments, i);
        if (!PyBytes_CheckExact(segment)) {
            PyErr_SetString(PyExc_TypeError, "segments are bytes");
            return -1;
        }
    }
    if (text_span(op, &self->op_span, 0) < 0 || text_span(actor, &self->actor_span, 1) < 0
        || text_span(reason, &self->reason_span, 1) < 0
        || exact_int(format, &self->format) < 0)
        return -1;
    for (int i = 0; i < SEGMENTS; i++) self->segment[i] = Py_NewRef(PyTuple_GET_ITEM(segments, i));
    self->op = Py_NewRef(op);
    self->actor = Py_NewRef(actor);
    self->reason = Py_NewRef(reason);
    self->ready = 1;
    return 0;
}

static int put_segment(Buf *b, NewPersonRows *self, int i) {
    PyObject *s = self->segment[i];
    return buf_put(b, PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s));
}

static int put_i32(Buf *b, int32_t v) {
    unsigned char be[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v};
    return buf_put(b, (const char *)be, 4);
}

/* A bytea field: length and bytes, or NULL (-1). */
static int put_field(Buf *b, Span f) {
    if (f.len < 0) return put_i32(b, -1);
    if (f.len > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "field too long for COPY");
        return -1;
    }
    return put_i32(b, (int32_t)f.len) < 0 ? -1 : buf_put(b, f.ptr, f.len);
}

/* A timestamptz field from Unix microseconds. */
static int put_moment(Buf *b, int64_t micros) {
    uint64_t v = (uint64_t)(micros - PG_EPOCH);
    unsigned char be[12] = {0, 0, 0, 8};
    for (int i = 0; i < 8; i++) be[4 + i] = (unsigned char)(v >> (56 - 8 * i));
    return buf_put(b, (const char *)be, 12);
}

static PyObject *buf_bytes(Buf *b) { return PyBytes_FromStringAndSize(b->data, b->len); }

/* The writer key's id and a 32-byte seal, as two more fields of a tuple. */
static int put_seal(Buf *b, NewPersonRows *self, const Span *parts, int n) {
    unsigned char mac[32];
    hmac_of(&self->writer, parts, n, mac);
    return buf_put(b, PyBytes_AS_STRING(self->writer_field),
                   PyBytes_GET_SIZE(self->writer_field)) < 0 || put_i32(b, 32) < 0
               ? -1 : buf_put(b, (const char *)mac, 32);
}

static Buf layout;

/* rows(person_id, recorded_at, email, name, password, wrapped, verified_at, email_digest,
        id_digest) -> (keys, people, latest, lookup, ids or None) */
static PyObject *rows_rows(NewPersonRows *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "NewPersonRows is not initialised");
        return NULL;
    }
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "rows takes 9 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]) || PyBytes_GET_SIZE(args[0]) != 16) {
        PyErr_SetString(PyExc_TypeError, "person_id must be 16 bytes");
        return NULL;
    }
    Envelope e = {.person_id = PyBytes_AS_STRING(args[0]), .version = 0,
                  .format = self->format, .prev = {NULL, -1}, .op = self->op_span,
                  .actor = self->actor_span, .reason = self->reason_span};
    Span wrapped, digest, id_digest;
    if (exact_int(args[1], &e.recorded_at) < 0 || bytes_span(args[2], &e.email) < 0
        || bytes_span(args[3], &e.name) < 0 || bytes_span(args[4], &e.password) < 0
        || bytes_span(args[5], &wrapped) < 0 || bytes_span(args[7], &digest) < 0
        || bytes_span(args[8], &id_digest) < 0)
        return NULL;
    if (e.email.len < 0 || e.name.len < 0 || wrapped.len < 0 || digest.len != 32) {
        PyErr_SetString(PyExc_TypeError, "email, name, wrapped key and a 32-byte digest are "
                                         "required");
        return NULL;
    }
    e.has_verified_at = args[6] != Py_None;
    if (e.has_verified_at && exact_int(args[6], &e.verified_at) < 0) return NULL;
    char cid[CID_TEXT_LEN];
    if (envelope_cid_text(&scratch, &e, cid) < 0) return NULL;

    PyObject *out[5] = {NULL, NULL, NULL, NULL, Py_NewRef(Py_None)};
    Buf *b = &layout;
    const char *pid = e.person_id;
    Span values[3] = {e.email, e.name, e.password};
    /* keys: a pid b wrapped */
    b->len = 0;
    if (put_segment(b, self, 0) < 0 || buf_put(b, pid, 16) < 0 || put_segment(b, self, 1) < 0
        || put_field(b, wrapped) < 0 || (out[0] = buf_bytes(b)) == NULL)
        goto fail;
    /* people: a pid b cid c stamp d fields; latest: a pid b cid c stamp stamp fields */
    for (int table = 0; table < 2; table++) {
        int base = table == 0 ? 2 : 6;
        b->len = 0;
        if (put_segment(b, self, base) < 0 || buf_put(b, pid, 16) < 0
            || put_segment(b, self, base + 1) < 0 || buf_put(b, cid, CID_TEXT_LEN) < 0
            || put_segment(b, self, base + 2) < 0 || put_moment(b, e.recorded_at) < 0
            || (table == 0 ? put_segment(b, self, 5) : put_moment(b, e.recorded_at)) < 0)
            goto fail;
        for (int i = 0; i < 3; i++)
            if (put_field(b, values[i]) < 0) goto fail;
        if ((e.has_verified_at ? put_moment(b, e.verified_at) : put_i32(b, -1)) < 0)
            goto fail;
        if (table == 0 && self->writer_field != NULL) {
            Span sealed[2] = {{ATTEST_LABEL, sizeof ATTEST_LABEL}, {cid, CID_TEXT_LEN}};
            if (put_seal(b, self, sealed, 2) < 0) goto fail;
        }
        if ((out[1 + table] = buf_bytes(b)) == NULL) goto fail;
    }
    /* lookup: a digest b pid c */
    b->len = 0;
    if (put_segment(b, self, 9) < 0 || buf_put(b, digest.ptr, 32) < 0
        || put_segment(b, self, 10) < 0 || buf_put(b, pid, 16) < 0
        || put_segment(b, self, 11) < 0)
        goto fail;
    if (self->writer_field != NULL) {
        Span claimed[4] = {{CLAIM_LABEL, sizeof CLAIM_LABEL}, digest, {pid, 16}, e.email};
        if (put_seal(b, self, claimed, 4) < 0) goto fail;
    }
    if ((out[3] = buf_bytes(b)) == NULL) goto fail;
    /* ids: a id_digest b pid c */
    if (id_digest.len >= 0) {
        b->len = 0;
        Py_CLEAR(out[4]);
        if (put_segment(b, self, 12) < 0 || put_field(b, id_digest) < 0
            || put_segment(b, self, 13) < 0 || buf_put(b, pid, 16) < 0
            || put_segment(b, self, 14) < 0 || (out[4] = buf_bytes(b)) == NULL)
            goto fail;
    }
    {
        PyObject *result = PyTuple_Pack(5, out[0], out[1], out[2], out[3], out[4]);
        for (int i = 0; i < 5; i++) Py_DECREF(out[i]);
        return result;
    }
fail:
    for (int i = 0; i < 5; i++) Py_XDECREF(out[i]);
    return NULL;
}

static PyMethodDef rows_methods[] = {
    {"rows", (PyCFunction)(void (*)(void))rows_rows, METH_FASTCALL,
     "rows(person_id, recorded_at, email, name, password, wrapped, verified_at, "
     "email_digest, id_digest) -> (keys, people, latest, lookup, ids or None)"},
    {NULL}};

static PyTypeObject NewPersonRowsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "peoplelog.ledger._native.NewPersonRows",
    .tp_basicsize = sizeof(NewPersonRows),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A bulk import's new persons as binary COPY tuples (see ledger/_import.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rows_init,
    .tp_dealloc = (destructor)rows_dealloc,
    .tp_methods = rows_methods,
};

static PyMethodDef native_methods[] = {
    {"envelope_cid", (PyCFunction)(void (*)(void))envelope_cid, METH_FASTCALL,
     "CID of a version's canonical envelope (arguments as in ledger/_cid.py)."},
    {NULL}};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "peoplelog.ledger._native", "Version CIDs in C (see ledger/_cid.py).", -1,
    native_methods};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&NewPersonRowsType) < 0) return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "NewPersonRows", (PyObject *)&NewPersonRowsType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
