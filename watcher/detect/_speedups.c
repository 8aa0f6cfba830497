/* Compiled hot paths of the detectors (optional: each has a pure-Python equivalent).
 *
 * nir_scan(buf, lo, hi) -> list[str]
 *     Every full NIR (13 characters + key, in every written form) whose match ends in
 *     (lo, hi], key-checked and structure-checked; values normalized (15 characters,
 *     2A/2B upper-case), the rarer forms marked with a leading "~". It is exactly the
 *     Hyperscan pattern of `nir.NirDetector` (tag 0) followed by `NirDetector._full`, done
 *     in one pass without a Python call per candidate: a dense member extract holds about
 *     9,000 NIRs a megabyte, and the Python path spends 2-3 us on each.
 *
 * luhn_ok(digits) -> bool, iban_length(candidate) -> int
 *     The checksums of `luhn.luhn_ok` and `iban._valid_lengths` (longest valid length, 0 if
 *     none), called for every SIRET/RPPS/IBAN candidate of a log file.
 *
 * The tests compare each function with its Python equivalent on generated inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* One optional separator inside the body: space, dot, dash or a UTF-8 no-break space. */
static inline Py_ssize_t skip_separator(const unsigned char *s, Py_ssize_t p, Py_ssize_t n)
{
    if (p < n && (s[p] == ' ' || s[p] == '.' || s[p] == '-'))
        return p + 1;
    if (p + 1 < n && s[p] == 0xc2 && s[p + 1] == 0xa0)
        return p + 2;
    return p;
}

/* Does s[a:b] (the bytes between body and key) match the key separator of nir.py:
 * (?: ?[./\-] ?| |\xc2\xa0|[\x22']? ?[;,\t|] ?[\x22']?)?  */
static int key_separator_ok(const unsigned char *s, Py_ssize_t a, Py_ssize_t b)
{
    Py_ssize_t len = b - a, i;
    if (len == 0)
        return 1;
    if (len == 2 && s[a] == 0xc2 && s[a + 1] == 0xa0)
        return 1;
    /* ' ?[./-] ?' */
    i = a;
    if (i < b && s[i] == ' ') i++;
    if (i < b && (s[i] == '.' || s[i] == '/' || s[i] == '-')) {
        i++;
        if (i < b && s[i] == ' ') i++;
        if (i == b) return 1;
    }
    if (len == 1 && s[a] == ' ')
        return 1;
    /* '[\x22\']? ?[;,\t|] ?[\x22\']?' */
    i = a;
    if (i < b && (s[i] == '"' || s[i] == '\'')) i++;
    if (i < b && s[i] == ' ') i++;
    if (i < b && (s[i] == ';' || s[i] == ',' || s[i] == '\t' || s[i] == '|')) {
        i++;
        if (i < b && s[i] == ' ') i++;
        if (i < b && (s[i] == '"' || s[i] == '\'')) i++;
        return i == b;
    }
    return 0;
}

static inline int month_ok(int m)
{
    return (m >= 1 && m <= 12) || m == 20 || (m >= 30 && m <= 42) || m >= 50;
}

/* Read `count` digits into v[] starting at p; returns the new position or -1. */
static inline Py_ssize_t read_digits(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, int count, char *v)
{
    for (int k = 0; k < count; k++, p++) {
        if (p >= n || !is_digit(s[p]))
            return -1;
        v[k] = (char)s[p];
    }
    return p;
}

/* Try a NIR starting at s[p] (a digit 1-4 not preceded by a digit). On success fills v[15]
 * and returns the Hyperscan match end (one past the non-digit that follows, or n). */
static Py_ssize_t match_nir(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *v)
{
    v[0] = (char)s[p++];
    p = skip_separator(s, p, n);
    if ((p = read_digits(s, p, n, 2, v + 1)) < 0) return -1;          /* year */
    p = skip_separator(s, p, n);
    if ((p = read_digits(s, p, n, 2, v + 3)) < 0) return -1;          /* month */
    if (!month_ok((v[3] - '0') * 10 + (v[4] - '0'))) return -1;
    p = skip_separator(s, p, n);
    if (p + 1 >= n || !is_digit(s[p])) return -1;                      /* place */
    v[5] = (char)s[p];
    if (is_digit(s[p + 1])) {
        v[6] = (char)s[p + 1];
        if (v[5] == '0' && v[6] == '0') return -1;
    } else if (s[p] == '2' && (s[p + 1] == 'A' || s[p + 1] == 'a' || s[p + 1] == 'B' || s[p + 1] == 'b')) {
        v[6] = (char)(s[p + 1] & ~0x20);                               /* upper-case */
    } else {
        return -1;
    }
    p += 2;
    p = skip_separator(s, p, n);
    if ((p = read_digits(s, p, n, 3, v + 7)) < 0) return -1;          /* commune */
    p = skip_separator(s, p, n);
    if ((p = read_digits(s, p, n, 3, v + 10)) < 0) return -1;         /* order, never 000 */
    if (v[10] == '0' && v[11] == '0' && v[12] == '0') return -1;
    Py_ssize_t gap = p;
    while (p < n && p - gap <= 5 && !is_digit(s[p])) p++;
    if (!key_separator_ok(s, gap, p)) return -1;
    if ((p = read_digits(s, p, n, 2, v + 13)) < 0) return -1;         /* key */
    if (p < n && is_digit(s[p])) return -1;
    return p < n ? p + 1 : n;
}

/* Is a match ending at `end` in (lo, hi]? As for Hyperscan's `$`, a NIR followed by the
 * buffer's final newline also ends before that newline. */
static inline int in_window(const unsigned char *s, Py_ssize_t n, Py_ssize_t end, Py_ssize_t lo, Py_ssize_t hi)
{
    if (end > lo && end <= hi)
        return 1;
    return end == n && s[n - 1] == '\n' && n - 1 > lo && n - 1 <= hi;
}

/* Key and the checks the pattern cannot do. Returns 0 invalid, 1 strict, 2 rarer form. */
static int check_nir(const char *v)
{
    int corsica = v[6] == 'A' || v[6] == 'B';
    long long body = 0;
    for (int k = 0; k < 13; k++) {
        int d = v[k] - '0';
        if (corsica && k == 5) d = 1;                                   /* 2A -> 19, 2B -> 18 */
        if (corsica && k == 6) d = v[6] == 'A' ? 9 : 8;
        body = body * 10 + d;
    }
    int key = (v[13] - '0') * 10 + (v[14] - '0');
    if (97 - (int)(body % 97) != key)
        return 0;
    int year = (v[1] - '0') * 10 + (v[2] - '0');
    int dept = (v[5] - '0') * 10 + (v[6] - '0');
    int commune_zero = v[7] == '0' && v[8] == '0' && v[9] == '0';
    if (corsica) {
        /* Corsica from 1976: no further check */
    } else if (dept == 20) {
        if (year >= 76) return 0;                                       /* 20 before 1976 only */
    } else if (dept == 97 || dept == 98) {
        int three = dept * 10 + (v[7] - '0');
        if (three < 971 || three > 989) return 0;
    } else if (dept == 99) {
        if (commune_zero) return 0;
    } else if (commune_zero) {
        return 0;
    }
    int month = (v[3] - '0') * 10 + (v[4] - '0');
    int strict = (v[0] == '1' || v[0] == '2') && ((month >= 1 && month <= 12) || month == 20);
    return strict ? 1 : 2;
}

static PyObject *nir_scan(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &lo, &hi))
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len;
    PyObject *out = PyList_New(0);
    if (!out) {
        PyBuffer_Release(&view);
        return NULL;
    }
    char v[16];
    v[0] = '~';
    /* A match ends at most 31 bytes after its start, one past the next non-digit. */
    Py_ssize_t first = lo - 32 > 0 ? lo - 32 : 0;
    Py_ssize_t stop = hi < n ? hi : n;
    for (Py_ssize_t p = first; p < stop; p++) {
        unsigned char c = s[p];
        if (c < '1' || c > '4' || (p > 0 && is_digit(s[p - 1])))
            continue;
        Py_ssize_t end = match_nir(s, p, n, v + 1);
        if (end < 0 || !in_window(s, n, end, lo, hi))
            continue;
        int tier = check_nir(v + 1);
        if (!tier)
            continue;
        PyObject *value = tier == 1 ? PyUnicode_FromStringAndSize(v + 1, 15) : PyUnicode_FromStringAndSize(v, 16);
        if (!value || PyList_Append(out, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(out);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(value);
    }
    PyBuffer_Release(&view);
    return out;
}

static const int DOUBLED[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};

static PyObject *luhn_ok(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s)
        return NULL;
    int total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int d = s[n - 1 - i] - '0';
        if (d < 0 || d > 9) {
            PyErr_SetString(PyExc_ValueError, "luhn_ok: digits only");
            return NULL;
        }
        total += (i & 1) ? DOUBLED[d] : d;
    }
    return PyBool_FromLong(total % 10 == 0);
}

static inline int base36(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    return -1;
}

/* ISO 7064 mod 97-10 of candidate[4:L] + candidate[:4], longest L >= 15 first. */
static PyObject *iban_length(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s)
        return NULL;
    if (n < 15 || n > 64)
        return PyLong_FromLong(0);
    int head = 0, scale = 1, remainders[64];
    for (int k = 0; k < 4; k++) {
        int value = base36(s[k]);
        if (value < 0) return PyLong_FromLong(0);
        head = (head * (value > 9 ? 100 : 10) + value) % 97;
        scale = (scale * (value > 9 ? 100 : 10)) % 97;
    }
    int remainder = 0;
    for (Py_ssize_t k = 4; k < n; k++) {
        int value = base36(s[k]);
        if (value < 0) return PyLong_FromLong(0);
        remainder = (remainder * (value > 9 ? 100 : 10) + value) % 97;
        remainders[k] = remainder;
    }
    for (Py_ssize_t length = n; length >= 15; length--) {
        if ((remainders[length - 1] * scale + head) % 97 == 1)
            return PyLong_FromSsize_t(length);
    }
    return PyLong_FromLong(0);
}

/* Lines holding something other than spaces, tabs and carriage returns (records of a text
 * file), counted like `shape._count_lines_py`: a line is counted at its newline. */
static PyObject *count_lines(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf, *end = s + view.len;
    Py_ssize_t count = 0;
    int content = 1;                     /* the text before the first newline counts, as in Python */
    for (; s < end; s++) {
        unsigned char c = *s;
        if (c == '\n') {
            count += content;
            content = 0;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            content = 1;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static PyMethodDef methods[] = {
    {"nir_scan", nir_scan, METH_VARARGS, "Full NIRs whose match ends in (lo, hi]: list of normalized values."},
    {"luhn_ok", luhn_ok, METH_O, "True when the Luhn checksum of a string of digits is 0."},
    {"count_lines", count_lines, METH_O, "Newlines that end a line holding something (blank lines are not records)."},
    {"iban_length", iban_length, METH_O, "Longest length >= 15 at which an IBAN candidate passes mod 97, or 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
