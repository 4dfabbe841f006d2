/*
 * NewPersonSealer.seal in C (OpenSSL's AES-256-GCM): the formats of fields/_cipher.py, byte
 * for byte, for bulk import. fields/_cipher.py uses it when built and falls back to its
 * Python definition otherwise; tests/test_sealer.py holds the two equal.
 *
 * Field ciphertext:  0x01 0x01 key_version:u32 | nonce:12 | AES-GCM(pad32(value)) | tag:16
 *   associated data: "peoplelog/field/1\0" header person_id field_name
 * Wrapped data key:  0x01 0x01 | nonce:12 | AES-GCM(data key) | tag:16
 *   associated data: "peoplelog/data-key/1\0" kek_id "\0" person_id version:u32
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#define KEY 32
#define NONCE 12
#define TAG 16
#define ID 16
#define RANDOM (KEY + 4 * NONCE)
#define HEADER 6
#define PAD 32
#define MAX_AD 512
#define MAX_VALUE (1 << 20)

static const char FIELD_AD[] = "peoplelog/field/1";  /* + its NUL */
static const char WRAP_AD[] = "peoplelog/data-key/1"; /* + its NUL */
static const unsigned char HEADER_1[HEADER] = {0x01, 0x01, 0, 0, 0, 1};

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *kek;  /* keyed once with the key-encryption key */
    EVP_CIPHER_CTX *data; /* re-keyed per person */
    unsigned char wrap_ad[MAX_AD];
    int wrap_ad_len; /* of the constant prefix: "peoplelog/data-key/1\0" kek_id "\0" */
    int ready;
} Sealer;

static void sealer_dealloc(Sealer *self) {
    EVP_CIPHER_CTX_free(self->kek); /* clears the key schedule */
    EVP_CIPHER_CTX_free(self->data);
    OPENSSL_cleanse(self->wrap_ad, sizeof self->wrap_ad);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int crypto_error(void) {
    PyErr_SetString(PyExc_RuntimeError, "AES-GCM failed in OpenSSL");
    return -1;
}

/* Sealer(kek_secret: bytes, kek_id: bytes) */
static int sealer_init(Sealer *self, PyObject *args, PyObject *kwds) {
    const char *secret, *kek_id;
    Py_ssize_t secret_len, kek_id_len;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Sealer is initialised once");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "y#y#:Sealer", &secret, &secret_len, &kek_id, &kek_id_len))
        return -1;
    if (secret_len != KEY) {
        PyErr_SetString(PyExc_ValueError, "a key-encryption key is 32 bytes");
        return -1;
    }
    Py_ssize_t prefix = (Py_ssize_t)sizeof WRAP_AD + kek_id_len + 1;
    if (prefix + ID + 4 > MAX_AD || memchr(kek_id, 0, (size_t)kek_id_len) != NULL) {
        PyErr_SetString(PyExc_ValueError, "unusable key id");
        return -1;
    }
    memcpy(self->wrap_ad, WRAP_AD, sizeof WRAP_AD);
    memcpy(self->wrap_ad + sizeof WRAP_AD, kek_id, (size_t)kek_id_len);
    self->wrap_ad[prefix - 1] = 0;
    self->wrap_ad_len = (int)prefix;
    self->kek = EVP_CIPHER_CTX_new();
    self->data = EVP_CIPHER_CTX_new();
    if (self->kek == NULL || self->data == NULL
        || EVP_EncryptInit_ex(self->kek, EVP_aes_256_gcm(), NULL, (const unsigned char *)secret,
                              NULL) != 1
        || EVP_EncryptInit_ex(self->data, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1)
        return crypto_error();
    self->ready = 1;
    return 0;
}

/* AES-GCM of in[0:len] under ctx's key with nonce and ad, appended to out with its tag. */
static int gcm(EVP_CIPHER_CTX *ctx, const unsigned char *nonce, const unsigned char *ad,
               int ad_len, const unsigned char *in, int len, unsigned char *out) {
    int n = 0, tail = 0;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(ctx, NULL, &n, ad, ad_len) != 1
        || EVP_EncryptUpdate(ctx, out, &n, in, len) != 1
        || EVP_EncryptFinal_ex(ctx, out + n, &tail) != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG, out + n + tail) != 1)
        return crypto_error();
    return 0;
}

/* The ciphertext of one field: header, nonce, padded value sealed, tag. */
static PyObject *seal_field(Sealer *self, const unsigned char *ad_head, const char *field,
                            const unsigned char *nonce, const char *value, Py_ssize_t len) {
    unsigned char ad[sizeof FIELD_AD + HEADER + ID + 8];
    size_t field_len = strlen(field);
    Py_ssize_t padded = (len / PAD + 1) * PAD; /* room for the 0x80 marker */
    memcpy(ad, ad_head, sizeof FIELD_AD + HEADER + ID);
    memcpy(ad + sizeof FIELD_AD + HEADER + ID, field, field_len);
    unsigned char *plain = PyMem_Malloc((size_t)padded);
    PyObject *out = PyBytes_FromStringAndSize(NULL, HEADER + NONCE + padded + TAG);
    if (plain == NULL || out == NULL) {
        PyMem_Free(plain);
        Py_XDECREF(out);
        return PyErr_NoMemory();
    }
    memcpy(plain, value, (size_t)len);
    plain[len] = 0x80;
    memset(plain + len + 1, 0, (size_t)(padded - len - 1));
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(o, HEADER_1, HEADER);
    memcpy(o + HEADER, nonce, NONCE);
    int rc = gcm(self->data, nonce, ad, (int)(sizeof FIELD_AD + HEADER + ID + field_len), plain,
                 (int)padded, o + HEADER + NONCE);
    OPENSSL_cleanse(plain, (size_t)padded);
    PyMem_Free(plain);
    if (rc < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static int value_arg(PyObject *o, const char **ptr, Py_ssize_t *len, int nullable) {
    if (o == Py_None && nullable) {
        *ptr = NULL;
        return 0;
    }
    if (!PyBytes_CheckExact(o) || PyBytes_GET_SIZE(o) > MAX_VALUE) {
        PyErr_SetString(PyExc_TypeError, "field values are bytes (at most 1 MiB)");
        return -1;
    }
    *ptr = PyBytes_AS_STRING(o);
    *len = PyBytes_GET_SIZE(o);
    return 0;
}

/* seal(person_id, random, email, name, password) -> (email, name, password, wrapped) */
static PyObject *sealer_seal(Sealer *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Sealer is not initialised");
        return NULL;
    }
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "seal takes 5 arguments");
        return NULL;
    }
    if (!PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "person_id and random are bytes");
        return NULL;
    }
    if (PyBytes_GET_SIZE(args[0]) != ID || PyBytes_GET_SIZE(args[1]) < RANDOM) {
        PyErr_SetString(PyExc_ValueError, "person_id is 16 bytes, random at least RANDOM");
        return NULL;
    }
    const char *values[3];
    Py_ssize_t lens[3] = {0, 0, 0};
    if (value_arg(args[2], &values[0], &lens[0], 0) < 0
        || value_arg(args[3], &values[1], &lens[1], 0) < 0
        || value_arg(args[4], &values[2], &lens[2], 1) < 0)
        return NULL;
    const unsigned char *pid = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *random = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    const unsigned char *secret = random, *nonces = random + KEY;

    unsigned char ad_head[sizeof FIELD_AD + HEADER + ID];
    memcpy(ad_head, FIELD_AD, sizeof FIELD_AD);
    memcpy(ad_head + sizeof FIELD_AD, HEADER_1, HEADER);
    memcpy(ad_head + sizeof FIELD_AD + HEADER, pid, ID);
    if (EVP_EncryptInit_ex(self->data, NULL, NULL, secret, NULL) != 1) {
        crypto_error();
        return NULL;
    }
    static const char *const names[3] = {"email", "name", "password"};
    PyObject *out[4] = {NULL, NULL, Py_None, NULL};
    Py_INCREF(Py_None);
    for (int i = 0; i < 3; i++) {
        if (values[i] == NULL) continue;
        PyObject *sealed = seal_field(self, ad_head, names[i], nonces + i * NONCE, values[i],
                                      lens[i]);
        if (sealed == NULL) goto fail;
        Py_XSETREF(out[i], sealed);
    }
    unsigned char ad[MAX_AD];
    int ad_len = self->wrap_ad_len;
    memcpy(ad, self->wrap_ad, (size_t)ad_len);
    memcpy(ad + ad_len, pid, ID);
    memcpy(ad + ad_len + ID, "\0\0\0\1", 4);
    out[3] = PyBytes_FromStringAndSize(NULL, 2 + NONCE + KEY + TAG);
    if (out[3] == NULL) goto fail;
    unsigned char *w = (unsigned char *)PyBytes_AS_STRING(out[3]);
    const unsigned char *wrap_nonce = nonces + 3 * NONCE;
    w[0] = 0x01;
    w[1] = 0x01;
    memcpy(w + 2, wrap_nonce, NONCE);
    if (gcm(self->kek, wrap_nonce, ad, ad_len + ID + 4, secret, KEY, w + 2 + NONCE) < 0)
        goto fail;
    {
        PyObject *result = PyTuple_Pack(4, out[0], out[1], out[2], out[3]);
        for (int i = 0; i < 4; i++) Py_DECREF(out[i]);
        return result;
    }
fail:
    for (int i = 0; i < 4; i++) Py_XDECREF(out[i]);
    return NULL;
}

static PyMethodDef sealer_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))sealer_seal, METH_FASTCALL,
     "seal(person_id, random, email, name, password) -> (email, name, password, wrapped)"},
    {NULL}};

static PyTypeObject SealerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "peoplelog.fields._native.Sealer",
    .tp_basicsize = sizeof(Sealer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Version-1 data keys and field ciphertexts of new persons (never shows a key).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sealer_init,
    .tp_dealloc = (destructor)sealer_dealloc,
    .tp_methods = sealer_methods,
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "peoplelog.fields._native",
    "New persons' field ciphertexts in C (see fields/_cipher.py).", -1, NULL};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&SealerType) < 0) return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL) return NULL;
    if (PyModule_AddIntConstant(module, "RANDOM", RANDOM) < 0
        || PyModule_AddObjectRef(module, "Sealer", (PyObject *)&SealerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
