/*
 * The CID of one version in C: the canonical envelope of csrc/canonical.h, hashed.
 * ledger/_cid.py falls back to its Python definition for anything unusual (a value of the
 * wrong type or out of range): the two are held equal by tests/test_cid.py.
 */
#include "canonical.h"

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

static PyMethodDef native_methods[] = {
    {"envelope_cid", (PyCFunction)(void (*)(void))envelope_cid, METH_FASTCALL,
     "CID of a version's canonical envelope (arguments as in ledger/_cid.py)."},
    {NULL}};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "ledger._native", "Version CIDs in C (see ledger/_cid.py).", -1,
    native_methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&native_module); }
