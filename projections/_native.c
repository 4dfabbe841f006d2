/*
 * peoplelog verification scanners in C.
 *
 * Both scanners read PostgreSQL's binary COPY stream (any split into chunks) and do the
 * per-row work of verification: ChainScanner rebuilds each version's RFC 8785 envelope,
 * hashes it and checks the chain links; LogScanner hashes the logged CIDs into an RFC 9162
 * Merkle tree. Rows that need a finding are handed back to Python, which names the
 * damage exactly as the pure-Python scanners do: the two are held to one contract suite.
 * SHA-256 is OpenSSL's libcrypto, the same library behind Python's hashlib.
 */
#include "canonical.h"

#define PG_EPOCH_MICROS INT64_C(946684800000000)
#define MAX_DEPTH 64

static const unsigned char COPY_SIGNATURE[11] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff,
                                                 '\r', '\n', 0};

/* ------------------------------------------------------------ binary COPY stream */

typedef struct {
    const char *ptr;
    int32_t len; /* -1: NULL */
} Field;

typedef struct {
    Buf carry;
    int header_done;
    int finished;
    int nfields;
} CopyStream;

static uint32_t be32(const char *p) {
    const unsigned char *u = (const unsigned char *)p;
    return ((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) | u[3];
}

static int64_t be64s(const char *p) {
    return (int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4));
}

/* Parse one tuple at p[0:n]. Returns bytes consumed, 0 when incomplete, -1 on error. */
static Py_ssize_t parse_tuple(CopyStream *s, const char *p, Py_ssize_t n, Field *fields) {
    if (n < 2) return 0;
    int16_t count = (int16_t)(((unsigned char)p[0] << 8) | (unsigned char)p[1]);
    if (count == -1) {
        s->finished = 1;
        return 2;
    }
    if (count != s->nfields) {
        PyErr_Format(PyExc_ValueError, "COPY row has %d fields, expected %d", (int)count,
                     s->nfields);
        return -1;
    }
    Py_ssize_t pos = 2;
    for (int i = 0; i < count; i++) {
        if (n - pos < 4) return 0;
        int32_t len = (int32_t)be32(p + pos);
        pos += 4;
        if (len < -1) {
            PyErr_SetString(PyExc_ValueError, "COPY field has a negative length");
            return -1;
        }
        fields[i].len = len;
        fields[i].ptr = p + pos;
        if (len > 0) {
            if (n - pos < len) return 0;
            pos += len;
        }
    }
    return pos;
}

typedef int (*RowFn)(void *self, Field *fields);

/* Feed a chunk; call on_row for every complete tuple. Keeps an incomplete tail. */
static int stream_feed(CopyStream *s, const char *data, Py_ssize_t n, RowFn on_row,
                       void *self) {
    const char *p = data;
    int from_carry = s->carry.len > 0;
    if (from_carry) {
        if (buf_put(&s->carry, data, n) < 0) return -1;
        p = s->carry.data;
        n = s->carry.len;
    }
    Py_ssize_t pos = 0;
    Field fields[16];
    for (;;) {
        if (!s->header_done) {
            if (n - pos < 19) break;
            if (memcmp(p + pos, COPY_SIGNATURE, 11) != 0) {
                PyErr_SetString(PyExc_ValueError, "not a binary COPY stream");
                return -1;
            }
            uint32_t ext = be32(p + pos + 15);
            if (ext > (1u << 30)) {
                PyErr_SetString(PyExc_ValueError, "binary COPY header is malformed");
                return -1;
            }
            if (n - pos < 19 + (Py_ssize_t)ext) break;
            pos += 19 + (Py_ssize_t)ext;
            s->header_done = 1;
        }
        if (pos == n) break;
        if (s->finished) {
            PyErr_SetString(PyExc_ValueError, "data after the end of the COPY stream");
            return -1;
        }
        Py_ssize_t used = parse_tuple(s, p + pos, n - pos, fields);
        if (used < 0) return -1;
        if (used == 0) break;
        if (!s->finished && on_row(self, fields) < 0) return -1;
        pos += used;
    }
    Py_ssize_t rest = n - pos;
    if (from_carry) {
        memmove(s->carry.data, s->carry.data + pos, (size_t)rest);
        s->carry.len = rest;
    } else if (rest > 0) {
        s->carry.len = 0;
        if (buf_put(&s->carry, p + pos, rest) < 0) return -1;
    }
    return 0;
}

static int get_chunk(PyObject *arg, Py_buffer *view) {
    return PyObject_GetBuffer(arg, view, PyBUF_SIMPLE);
}

/* Feed one chunk of `arg` to `s`; the row callback appends to `*slot`. Returns None, or the
   events the chunk produced. */
static PyObject *feed_events(CopyStream *s, PyObject **slot, RowFn on_row, void *self,
                             PyObject *arg) {
    Py_buffer view;
    if (get_chunk(arg, &view) < 0) return NULL;
    *slot = PyList_New(0);
    if (*slot == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    int rc = stream_feed(s, view.buf, view.len, on_row, self);
    PyBuffer_Release(&view);
    PyObject *events = *slot;
    *slot = NULL;
    if (rc < 0) {
        Py_DECREF(events);
        return NULL;
    }
    if (PyList_GET_SIZE(events) == 0) {
        Py_DECREF(events);
        Py_RETURN_NONE;
    }
    return events;
}

/* Unix microseconds of a binary timestamptz; 0 for +/-infinity (no canonical form). */
static int micros(const Field *f, int64_t *out) {
    int64_t v = be64s(f->ptr);
    if (v == INT64_MAX || v == INT64_MIN) return 0;
    if (v > INT64_MAX - PG_EPOCH_MICROS) return 0;
    *out = v + PG_EPOCH_MICROS;
    return 1;
}

/* ---------------------------------------------------------------- Merkle frontier */

typedef struct {
    uint64_t size;
    int n;
    unsigned char h[MAX_DEPTH][32];
} Frontier;

static void node_hash(const unsigned char *left, const unsigned char *right,
                      unsigned char *out) {
    unsigned char in[65];
    in[0] = 0x01;
    memcpy(in + 1, left, 32);
    memcpy(in + 33, right, 32);
    sha256(in, sizeof in, out);
}

static void frontier_append(Frontier *f, const unsigned char *leaf) {
    unsigned char node[32];
    memcpy(node, leaf, 32);
    uint64_t s = f->size;
    while (s & 1) {
        node_hash(f->h[--f->n], node, node);
        s >>= 1;
    }
    memcpy(f->h[f->n++], node, 32);
    f->size++;
}

static void frontier_root(const Frontier *f, unsigned char *out) {
    if (f->n == 0) {
        sha256("", 0, out);
        return;
    }
    unsigned char node[32];
    memcpy(node, f->h[f->n - 1], 32);
    for (int i = f->n - 2; i >= 0; i--) node_hash(f->h[i], node, node);
    memcpy(out, node, 32);
}

/* ---------------------------------------------------------------- ChainScanner */

enum { C_PID, C_VERSION, C_CID, C_PREV, C_FORMAT, C_OP, C_RECORDED, C_ACTOR, C_REASON,
       C_EMAIL, C_NAME, C_PASSWORD, C_VERIFIED, C_COUNT };

typedef struct {
    PyObject_HEAD
    CopyStream stream;
    Buf canon;
    Buf last_cid; /* len -1 in `has_last` terms: has_last == 0 means None */
    int has_last;
    char pid[16];
    int has_pid;
    int64_t expected;
    int erased;
    long long rows;
    long long persons;
    int format_version;
    PyObject *ops; /* tuple of bytes: known ops */
    PyObject *genesis_op;
    PyObject *erased_op;
    PyObject *events;
} ChainScanner;

static int field_equals(const Field *f, PyObject *bytes) {
    return f->len == PyBytes_GET_SIZE(bytes)
           && memcmp(f->ptr, PyBytes_AS_STRING(bytes), (size_t)f->len) == 0;
}

static Span span(const Field *f) {
    Span s = {f->ptr, f->len};
    return s;
}

static int check_width(const Field *f, int32_t width, const char *what) {
    if (f->len != width) {
        PyErr_Format(PyExc_ValueError, "COPY field %s has %d bytes, expected %d", what,
                     (int)f->len, (int)width);
        return -1;
    }
    return 0;
}

static PyObject *text_or_none(const char *s, Py_ssize_t n, int present) {
    if (!present) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, n, "strict");
}

static int chain_row(void *self_, Field *f) {
    ChainScanner *self = (ChainScanner *)self_;
    if (check_width(&f[C_PID], 16, "person_id") < 0 || check_width(&f[C_VERSION], 4, "version") < 0
        || check_width(&f[C_FORMAT], 2, "format") < 0
        || check_width(&f[C_RECORDED], 8, "recorded_at") < 0 || f[C_CID].len < 0
        || f[C_OP].len < 0
        || (f[C_VERIFIED].len >= 0 && check_width(&f[C_VERIFIED], 8, "verified_at") < 0)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "COPY row has a NULL key field");
        return -1;
    }
    if (!self->has_pid || memcmp(self->pid, f[C_PID].ptr, 16) != 0) {
        memcpy(self->pid, f[C_PID].ptr, 16);
        self->has_pid = 1;
        self->expected = 0;
        self->has_last = 0;
        self->erased = 0;
        self->persons++;
    }
    self->rows++;
    int64_t version = (int32_t)be32(f[C_VERSION].ptr);
    int fmt = (int16_t)(((unsigned char)f[C_FORMAT].ptr[0] << 8)
                        | (unsigned char)f[C_FORMAT].ptr[1]);
    char pid[36];
    uuid_text(f[C_PID].ptr, pid);

    Envelope e = {.person_id = f[C_PID].ptr, .version = version, .format = fmt,
                  .has_verified_at = f[C_VERIFIED].len >= 0,
                  .prev = span(&f[C_PREV]), .op = span(&f[C_OP]), .actor = span(&f[C_ACTOR]),
                  .reason = span(&f[C_REASON]), .email = span(&f[C_EMAIL]),
                  .name = span(&f[C_NAME]), .password = span(&f[C_PASSWORD])};
    int canonical = micros(&f[C_RECORDED], &e.recorded_at)
                    && (!e.has_verified_at || micros(&f[C_VERIFIED], &e.verified_at));
    char computed[CID_TEXT_LEN];
    int matches = 0;
    if (canonical) {
        if (envelope_cid_text(&self->canon, &e, computed) < 0) return -1;
        matches = f[C_CID].len == CID_TEXT_LEN
                  && memcmp(computed, f[C_CID].ptr, CID_TEXT_LEN) == 0;
    }
    int op_known = 0;
    Py_ssize_t nops = PyTuple_GET_SIZE(self->ops);
    for (Py_ssize_t i = 0; i < nops && !op_known; i++)
        op_known = field_equals(&f[C_OP], PyTuple_GET_ITEM(self->ops, i));
    int link_ok;
    if (version == 0)
        link_ok = f[C_PREV].len < 0 && field_equals(&f[C_OP], self->genesis_op);
    else
        link_ok = f[C_PREV].len >= 0 && self->has_last && f[C_PREV].len == self->last_cid.len
                  && memcmp(f[C_PREV].ptr, self->last_cid.data, (size_t)f[C_PREV].len) == 0;
    int clean = matches && fmt == self->format_version && op_known && !self->erased
                && version == self->expected && link_ok;
    if (!clean) {
        PyObject *event = Py_BuildValue(
            "(s#LNNiNNLNO)", pid, (Py_ssize_t)36, (long long)version,
            text_or_none(f[C_CID].ptr, f[C_CID].len, 1),
            text_or_none(f[C_PREV].ptr, f[C_PREV].len, f[C_PREV].len >= 0), fmt,
            text_or_none(f[C_OP].ptr, f[C_OP].len, 1),
            text_or_none(computed, CID_TEXT_LEN, canonical), (long long)self->expected,
            text_or_none(self->last_cid.data, self->last_cid.len, self->has_last),
            self->erased ? Py_True : Py_False);
        if (event == NULL) return -1;
        int rc = PyList_Append(self->events, event);
        Py_DECREF(event);
        if (rc < 0) return -1;
    }
    if (version < self->expected) return 0;
    if (field_equals(&f[C_OP], self->erased_op)) self->erased = 1;
    self->expected = version + 1;
    self->last_cid.len = 0;
    if (buf_put(&self->last_cid, f[C_CID].ptr, f[C_CID].len) < 0) return -1;
    self->has_last = 1;
    return 0;
}

static int ChainScanner_init(ChainScanner *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"format_version", "ops", "genesis_op", "erased_op", NULL};
    int format_version;
    PyObject *ops, *genesis, *erased;
    if (self->ops != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a ChainScanner is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO!SS", kwlist, &format_version,
                                     &PyTuple_Type, &ops, &genesis, &erased))
        return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ops); i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(ops, i))) {
            PyErr_SetString(PyExc_TypeError, "ops must be a tuple of bytes");
            return -1;
        }
    }
    self->format_version = format_version;
    Py_INCREF(ops);
    Py_XSETREF(self->ops, ops);
    Py_INCREF(genesis);
    Py_XSETREF(self->genesis_op, genesis);
    Py_INCREF(erased);
    Py_XSETREF(self->erased_op, erased);
    self->stream.nfields = C_COUNT;
    return 0;
}

static void ChainScanner_dealloc(ChainScanner *self) {
    buf_free(&self->stream.carry);
    buf_free(&self->canon);
    buf_free(&self->last_cid);
    Py_XDECREF(self->ops);
    Py_XDECREF(self->genesis_op);
    Py_XDECREF(self->erased_op);
    Py_XDECREF(self->events);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Feed one chunk. Returns None, or the list of rows that need a finding. */
static PyObject *ChainScanner_feed(ChainScanner *self, PyObject *arg) {
    if (self->ops == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ChainScanner is not initialised");
        return NULL;
    }
    return feed_events(&self->stream, &self->events, chain_row, self, arg);
}

static PyObject *ChainScanner_get_rows(ChainScanner *self, void *closure) {
    return PyLong_FromLongLong(self->rows);
}

static PyObject *ChainScanner_get_persons(ChainScanner *self, void *closure) {
    return PyLong_FromLongLong(self->persons);
}

static PyObject *get_finished(CopyStream *s) {
    return PyBool_FromLong(s->finished && s->carry.len == 0);
}

static PyObject *ChainScanner_get_finished(ChainScanner *self, void *closure) {
    return get_finished(&self->stream);
}

static PyMethodDef ChainScanner_methods[] = {
    {"feed", (PyCFunction)ChainScanner_feed, METH_O,
     "Scan a chunk of the COPY stream; return the rows that need a finding, or None."},
    {NULL}};

static PyGetSetDef ChainScanner_getset[] = {
    {"rows", (getter)ChainScanner_get_rows, NULL, "rows scanned", NULL},
    {"persons", (getter)ChainScanner_get_persons, NULL, "persons scanned", NULL},
    {"finished", (getter)ChainScanner_get_finished, NULL, "end of stream seen", NULL},
    {NULL}};

static PyTypeObject ChainScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "peoplelog.projections._native.ChainScanner",
    .tp_basicsize = sizeof(ChainScanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Recomputes CIDs and checks chain links over a binary COPY of people.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ChainScanner_init,
    .tp_dealloc = (destructor)ChainScanner_dealloc,
    .tp_methods = ChainScanner_methods,
    .tp_getset = ChainScanner_getset,
};

/* ---------------------------------------------------------------- LogScanner */

enum { L_POSITION, L_PID, L_VERSION, L_CID, L_STORED, L_COUNT };

typedef struct {
    uint64_t start, end;
    Py_ssize_t given; /* its place in the order the caller gave */
    Frontier f;
} Range;

typedef struct {
    PyObject_HEAD
    CopyStream stream;
    Frontier tree;
    int64_t expected;
    long long rows;
    uint64_t *stops;
    Py_ssize_t nstops, next_stop;
    Range *ranges;
    Py_ssize_t nranges, range_cursor;
    PyObject *events;
} LogScanner;

static PyObject *frontier_bytes(const Frontier *f) {
    return PyBytes_FromStringAndSize((const char *)f->h, (Py_ssize_t)f->n * 32);
}

static int log_row(void *self_, Field *f) {
    LogScanner *self = (LogScanner *)self_;
    if (check_width(&f[L_POSITION], 8, "position") < 0 || check_width(&f[L_PID], 16, "person_id") < 0
        || check_width(&f[L_VERSION], 4, "version") < 0)
        return -1;
    if (f[L_CID].len < 0) {
        PyErr_SetString(PyExc_ValueError, "COPY row has a NULL logged CID");
        return -1;
    }
    if (self->tree.size >= ((uint64_t)1 << (MAX_DEPTH - 1))) {
        PyErr_SetString(PyExc_OverflowError, "log too large");
        return -1;
    }
    self->rows++;
    int64_t position = be64s(f[L_POSITION].ptr);
    unsigned char leaf_in[1 + CID_RAW_LEN];
    leaf_in[0] = 0x00;
    int valid = cid_raw(f[L_CID].ptr, f[L_CID].len, leaf_in + 1);
    int same = f[L_STORED].len == f[L_CID].len
               && memcmp(f[L_STORED].ptr, f[L_CID].ptr, (size_t)f[L_CID].len) == 0;
    if (position != self->expected || !same || !valid) {
        char pid[36];
        uuid_text(f[L_PID].ptr, pid);
        PyObject *event = Py_BuildValue(
            "(sLLs#iNNO)", "entry", (long long)position, (long long)self->expected, pid,
            (Py_ssize_t)36, (int)(int32_t)be32(f[L_VERSION].ptr),
            text_or_none(f[L_CID].ptr, f[L_CID].len, 1),
            text_or_none(f[L_STORED].ptr, f[L_STORED].len, f[L_STORED].len >= 0),
            valid ? Py_True : Py_False);
        if (event == NULL) return -1;
        int rc = PyList_Append(self->events, event);
        Py_DECREF(event);
        if (rc < 0) return -1;
    }
    self->expected = (int64_t)((uint64_t)position + 1); /* wraps only at 2**63 - 1 */
    unsigned char leaf[32];
    if (valid) {
        sha256(leaf_in, sizeof leaf_in, leaf);
    } else { /* not a CID: the leaf of its text, as the Python scan does */
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        SHA256_Update(&ctx, leaf_in, 1);
        SHA256_Update(&ctx, f[L_CID].ptr, (size_t)f[L_CID].len);
        SHA256_Final(leaf, &ctx);
    }
    uint64_t index = self->tree.size;
    frontier_append(&self->tree, leaf);
    while (self->range_cursor < self->nranges) {
        Range *r = &self->ranges[self->range_cursor];
        if (index < r->start) break;
        if (index < r->end) {
            frontier_append(&r->f, leaf);
            break;
        }
        self->range_cursor++;
    }
    while (self->next_stop < self->nstops && self->stops[self->next_stop] < self->tree.size)
        self->next_stop++;
    if (self->next_stop < self->nstops && self->stops[self->next_stop] == self->tree.size) {
        unsigned char root[32];
        frontier_root(&self->tree, root);
        PyObject *event = Py_BuildValue("(sKy#N)", "size", (unsigned long long)self->tree.size,
                                        (const char *)root, (Py_ssize_t)32,
                                        frontier_bytes(&self->tree));
        if (event == NULL) return -1;
        int rc = PyList_Append(self->events, event);
        Py_DECREF(event);
        if (rc < 0) return -1;
        self->next_stop++;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_range(const void *a, const void *b) {
    uint64_t x = ((const Range *)a)->start, y = ((const Range *)b)->start;
    return (x > y) - (x < y);
}

static int LogScanner_init(LogScanner *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"stops", "ranges", NULL};
    PyObject *stops_arg, *ranges_arg;
    if (self->stream.nfields != 0 || self->stops != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a LogScanner is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO", kwlist, &stops_arg, &ranges_arg))
        return -1;
    PyObject *stops = PySequence_Fast(stops_arg, "stops must be a sequence of sizes");
    if (stops == NULL) return -1;
    PyObject *ranges = PySequence_Fast(ranges_arg, "ranges must be a sequence of pairs");
    if (ranges == NULL) {
        Py_DECREF(stops);
        return -1;
    }
    Py_ssize_t ns = PySequence_Fast_GET_SIZE(stops), nr = PySequence_Fast_GET_SIZE(ranges);
    self->stops = PyMem_Calloc((size_t)ns + 1, sizeof(uint64_t));
    self->ranges = PyMem_Calloc((size_t)nr + 1, sizeof(Range));
    int rc = -1;
    if (self->stops == NULL || self->ranges == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(stops, i));
        if (PyErr_Occurred()) goto done;
        self->stops[i] = v;
    }
    for (Py_ssize_t i = 0; i < nr; i++) {
        unsigned long long a, b;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(ranges, i), "KK", &a, &b)) goto done;
        if (a >= b) {
            PyErr_SetString(PyExc_ValueError, "a range must not be empty");
            goto done;
        }
        self->ranges[i].start = a;
        self->ranges[i].end = b;
        self->ranges[i].given = i;
    }
    qsort(self->stops, (size_t)ns, sizeof(uint64_t), cmp_u64);
    qsort(self->ranges, (size_t)nr, sizeof(Range), cmp_range);
    for (Py_ssize_t i = 1; i < nr; i++) {
        if (self->ranges[i].start < self->ranges[i - 1].end) {
            PyErr_SetString(PyExc_ValueError, "ranges must not overlap");
            goto done;
        }
    }
    self->nstops = ns;
    self->nranges = nr;
    self->stream.nfields = L_COUNT;
    rc = 0;
done:
    Py_DECREF(stops);
    Py_DECREF(ranges);
    return rc;
}

static void LogScanner_dealloc(LogScanner *self) {
    buf_free(&self->stream.carry);
    PyMem_Free(self->stops);
    PyMem_Free(self->ranges);
    Py_XDECREF(self->events);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Feed one chunk. Returns None, or the events in stream order:
   ("entry", position, expected, person_id, version, cid, stored_cid, cid_valid) and
   ("size", size, root, frontier). */
static PyObject *LogScanner_feed(LogScanner *self, PyObject *arg) {
    if (self->stream.nfields != L_COUNT) {
        PyErr_SetString(PyExc_RuntimeError, "LogScanner is not initialised");
        return NULL;
    }
    return feed_events(&self->stream, &self->events, log_row, self, arg);
}

static PyObject *LogScanner_root(LogScanner *self, PyObject *unused) {
    unsigned char root[32];
    frontier_root(&self->tree, root);
    return PyBytes_FromStringAndSize((const char *)root, 32);
}

static PyObject *LogScanner_frontier(LogScanner *self, PyObject *unused) {
    return frontier_bytes(&self->tree);
}

static PyObject *LogScanner_range_roots(LogScanner *self, PyObject *unused) {
    PyObject *out = PyList_New(self->nranges);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < self->nranges; i++) {
        Range *r = &self->ranges[i];
        if (r->f.size != r->end - r->start) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_ValueError, "the stream did not cover every range");
            return NULL;
        }
        unsigned char root[32];
        frontier_root(&r->f, root);
        PyObject *item = PyBytes_FromStringAndSize((const char *)root, 32);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, r->given, item);
    }
    return out;
}

static PyObject *LogScanner_get_size(LogScanner *self, void *closure) {
    return PyLong_FromUnsignedLongLong(self->tree.size);
}

static PyObject *LogScanner_get_rows(LogScanner *self, void *closure) {
    return PyLong_FromLongLong(self->rows);
}

static PyObject *LogScanner_get_finished(LogScanner *self, void *closure) {
    return get_finished(&self->stream);
}

static PyMethodDef LogScanner_methods[] = {
    {"feed", (PyCFunction)LogScanner_feed, METH_O,
     "Scan a chunk of the COPY stream; return the events it produced, or None."},
    {"root", (PyCFunction)LogScanner_root, METH_NOARGS, "Tree root of the leaves so far."},
    {"frontier", (PyCFunction)LogScanner_frontier, METH_NOARGS,
     "Frontier hashes of the leaves so far, largest subtree first."},
    {"range_roots", (PyCFunction)LogScanner_range_roots, METH_NOARGS,
     "Subtree roots of the ranges, in the order they were given."},
    {NULL}};

static PyGetSetDef LogScanner_getset[] = {
    {"size", (getter)LogScanner_get_size, NULL, "leaves in the tree", NULL},
    {"rows", (getter)LogScanner_get_rows, NULL, "rows scanned", NULL},
    {"finished", (getter)LogScanner_get_finished, NULL, "end of stream seen", NULL},
    {NULL}};

static PyTypeObject LogScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "peoplelog.projections._native.LogScanner",
    .tp_basicsize = sizeof(LogScanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Builds the RFC 9162 tree over a binary COPY of the log.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)LogScanner_init,
    .tp_dealloc = (destructor)LogScanner_dealloc,
    .tp_methods = LogScanner_methods,
    .tp_getset = LogScanner_getset,
};

/* ---------------------------------------------------------------- module */

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "peoplelog.projections._native",
    "Verification scanners in C (see projections/_scan.py).", -1, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&ChainScannerType) < 0 || PyType_Ready(&LogScannerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL) return NULL;
    Py_INCREF(&ChainScannerType);
    Py_INCREF(&LogScannerType);
    if (PyModule_AddObject(m, "ChainScanner", (PyObject *)&ChainScannerType) < 0
        || PyModule_AddObject(m, "LogScanner", (PyObject *)&LogScannerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
