/* Compiled hot paths of the detectors (optional: each has a pure-Python equivalent).
 *
 * scan_numbers(buf, lo, hi) -> (nirs, rarer-form nirs, sirets, rpps, phones, ibans, failed)
 *     (the lists in the order of NUMBER_KINDS, `failed` in that of FAILED_KINDS, both exported
 *     for watcher.detect to check at import). Every full NIR (13 characters + key, every written form,
 *     and as a number with its thousands grouped), SIRET and grouped SIREN,
 *     RPPS number, French phone number and IBAN whose match ends in (lo, hi], checked and
 *     normalized as the Python detectors do (NIRs of the rarer forms marked "~", in a list
 *     of their own so Python need not look for the mark among a million values). It is
 *     exactly the Hyperscan patterns each detector leaves out when compiled (nir.py NirTag.FULL and THOUSANDS,
 *     siret.py SiretTag.SIRET and SIREN_GROUPED, rpps.py, phone.py, iban.py) followed by their `find`, in one pass
 *     without a Python call per match: a dense member extract holds ~9,000 NIRs a megabyte,
 *     and the Python path spent 2-3 us on each. `failed` is (nirs, sirets, rpps): how many
 *     numbers had the shape and structure of one but failed its key or Luhn check, for the
 *     plausibility test of the scoring (random digits pass a NIR key 1 in 97).
 *
 * count_lines(data) -> int, base64_run(data) -> bool
 *     Records of a text (shape.py) and the trigger of base64 decoding (extract/blobs.py):
 *     two passes over every byte of every document.
 *
 * utf8_valid(data) -> bool
 *     UTF-8 validation without building a string (extract/decode.py).
 *
 * luhn_ok(digits) -> bool, iban_length(candidate) -> int
 *     The checksums of `luhn.luhn_ok_py` and `iban.valid_length_py` (longest valid length, 0
 *     if none), for the labelled SIRENs and the Python paths.
 *
 * cmac_input(data, separator, pad), block_keys(blocks), sorted_hits(members, keys)
 *     Member watchlists (watcher/watchlist/members.py): the AES input of a document's
 *     NIRs (their layout checked, CMAC's pad applied); their fingerprints from the AES
 *     blocks, sorted and distinct; those among a list's sorted members, found by galloping
 *     through the list from one answer to the next: the 908,528 NIRs of the bench corpus
 *     against 20 million members in ~25 ms (a walk reads the whole list), without numpy,
 *     whose import alone took 33 ms of `watcher scan`.
 *
 * The tests compare each function with its Python equivalent on generated inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The end of a number pattern (`NOT_BEFORE_DIGIT` of base.py): p is one past the last
 * digit; the match ends one past the following non-digit, or at the end of the buffer.
 * -1 when a digit follows (the number is part of a longer one). */
static inline Py_ssize_t number_match_end(const unsigned char *s, Py_ssize_t p, Py_ssize_t n)
{
    if (p < n && is_digit(s[p]))
        return -1;
    return p < n ? p + 1 : n;
}

/* Is a match ending at `end` in (lo, hi]? As for Hyperscan's `$`, a number followed by the
 * buffer's final newline also ends before that newline. */
static inline int in_window(const unsigned char *s, Py_ssize_t n, Py_ssize_t end, Py_ssize_t lo, Py_ssize_t hi)
{
    if (end > lo && end <= hi)
        return 1;
    return end == n && n > 0 && s[n - 1] == '\n' && n - 1 > lo && n - 1 <= hi;
}

/* Append s[0:len] (ASCII) to a list as a str; -1 on error. (PyUnicode_New + memcpy: the
 * generic UTF-8 decoder costs 4x more per value, and an extract has a million of them.) */
static int append_text(PyObject *out, const char *text, Py_ssize_t len)
{
    PyObject *value = PyUnicode_New(len, 127);
    if (value)
        memcpy(PyUnicode_1BYTE_DATA(value), text, len);
    if (!value)
        return -1;
    int status = PyList_Append(out, value);
    Py_DECREF(value);
    return status;
}

static const int DOUBLED[10] = {0, 2, 4, 6, 8, 1, 3, 5, 7, 9};

static int luhn_digits(const char *d, int len)
{
    int total = 0;
    for (int i = 0; i < len; i++) {
        int value = d[len - 1 - i] - '0';
        total += (i & 1) ? DOUBLED[value] : value;
    }
    return total % 10 == 0;
}

/* One optional separator inside the body: space, dot, dash or a UTF-8 no-break space. */
static inline Py_ssize_t skip_separator(const unsigned char *s, Py_ssize_t p, Py_ssize_t n)
{
    if (p < n && (s[p] == ' ' || s[p] == '.' || s[p] == '-'))
        return p + 1;
    if (p + 1 < n && s[p] == 0xc2 && s[p + 1] == 0xa0)
        return p + 2;
    return p;
}

/* The key named or in brackets: ' ?\( ?' or '(?:, ?| )?\(? ?cl[eé] ?:? ?' (any case):
 * `1841275123456 (78)`, `1 84 12 75 123 456, clé : 78`. */
static int key_word_ok(const unsigned char *s, Py_ssize_t i, Py_ssize_t b)
{
    Py_ssize_t j = i;
    if (j < b && s[j] == ' ') j++;
    if (j < b && s[j] == '(') {
        j++;
        if (j < b && s[j] == ' ') j++;
        if (j == b) return 1;
    }
    j = i;
    if (j < b && s[j] == ',') {
        j++;
        if (j < b && s[j] == ' ') j++;
    } else if (j < b && s[j] == ' ') {
        j++;
    }
    if (j < b && s[j] == '(') j++;
    if (j < b && s[j] == ' ') j++;
    if (j + 2 > b || (s[j] | 0x20) != 'c' || (s[j + 1] | 0x20) != 'l')
        return 0;
    j += 2;
    if (j < b && (s[j] | 0x20) == 'e')
        j++;
    else if (j + 1 < b && s[j] == 0xc3 && (s[j + 1] == 0xa9 || s[j + 1] == 0x89))
        j += 2;
    else
        return 0;
    if (j < b && s[j] == ' ') j++;
    if (j < b && s[j] == ':') j++;
    if (j < b && s[j] == ' ') j++;
    return j == b;
}

/* Does s[a:b] (the bytes between body and key) match the key separator of nir.py:
 * (?: ?[./\-] ?| |\xc2\xa0|[\x22']? ?[;,\t|] ?[\x22']?|<key_word_ok>)?  */
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
        if (i == b) return 1;
    }
    return key_word_ok(s, a, b);
}

/* The months the Assurance Maladie's validator accepts: 01-12 and 20-99 (nir.py MONTHS). */
static inline int month_ok(int m)
{
    return (m >= 1 && m <= 12) || m >= 20;
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
    while (p < n && p - gap <= 11 && !is_digit(s[p])) p++;          /* ", (clé : " at most */
    if (!key_separator_ok(s, gap, p)) return -1;
    if ((p = read_digits(s, p, n, 2, v + 13)) < 0) return -1;         /* key */
    return number_match_end(s, p, n);
}


/* A NIR written as a number with its thousands grouped, as a spreadsheet's number format
 * shows it and as Excel exports it to CSV (184 127 512 345 678, 184.127.512.345.678,
 * 184,127,512,345,678; a no-break space in fr-FR): five groups of three digits, the same
 * separator between each (space, no-break space, dot or comma), not a piece of a longer
 * grouped number. Fills v[15], checks what match_nir's shape does (month, place, order) and
 * returns the match end, or -1 (nir.py NirTag.THOUSANDS). */
static Py_ssize_t match_nir_thousands(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *v)
{
    Py_ssize_t first = p, sep = p + 3, width;
    if (sep >= n)
        return -1;
    if (s[sep] == ' ' || s[sep] == '.' || s[sep] == ',')
        width = 1;
    else if (s[sep] == 0xc2 && sep + 1 < n && s[sep + 1] == 0xa0)
        width = 2;
    else
        return -1;
    if (first > width && !memcmp(s + first - width, s + sep, width) && is_digit(s[first - width - 1]))
        return -1;                                                      /* ...123 456 789...: a longer number */
    for (int group = 0; group < 5; group++) {
        if (group && (p + width > n || memcmp(s + p, s + sep, width)))
            return -1;
        if ((p = read_digits(s, p + (group ? width : 0), n, 3, v + 3 * group)) < 0)
            return -1;
    }
    if (p + width < n && !memcmp(s + p, s + sep, width) && is_digit(s[p + width]))
        return -1;
    if (!month_ok((v[3] - '0') * 10 + (v[4] - '0')) || (v[5] == '0' && v[6] == '0')
            || (v[10] == '0' && v[11] == '0' && v[12] == '0'))
        return -1;
    return number_match_end(s, p, n);
}

/* The checks the pattern cannot do, then the key. Returns -1 bad structure, 0 bad key,
 * 1 strict form, 2 rarer form. */
static int check_nir(const char *v)
{
    int corsica = v[6] == 'A' || v[6] == 'B';
    int year = (v[1] - '0') * 10 + (v[2] - '0');
    int dept = (v[5] - '0') * 10 + (v[6] - '0');
    int commune_zero = v[7] == '0' && v[8] == '0' && v[9] == '0';
    if (corsica) {
        /* Corsica from 1976: no further check */
    } else if (dept == 20) {
        if (year >= 76) return -1;                                      /* 20 before 1976 only */
    } else if (dept == 97 || dept == 98) {
        int three = dept * 10 + (v[7] - '0');
        if (three < 971 || three > 989) return -1;
    } else if (dept == 99) {
        if (commune_zero) return -1;
    } else if (commune_zero) {
        return -1;
    }
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
    int month = (v[3] - '0') * 10 + (v[4] - '0');
    int strict = (v[0] == '1' || v[0] == '2') && ((month >= 1 && month <= 12) || month == 20);
    return strict ? 1 : 2;
}

/* SIRET `NNN[ .]?NNN[ .]?NNN[ .]?NNNNN` (siret.py, SiretTag.SIRET), else SIREN grouped
 * `NNN NNN NNN` not followed by another group (SiretTag.SIREN_GROUPED): a 14-digit value or "siren:" + 9 digits. */
static inline Py_ssize_t siret_at(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *value, Py_ssize_t *len)
{
    if (!is_digit(s[p]) || (p > 0 && is_digit(s[p - 1])))
        return -1;
    static const int groups[4] = {3, 3, 3, 5};
    char digits[14];
    Py_ssize_t q = p;
    int k = 0, g;
    for (g = 0; g < 4; g++) {
        if (g > 0 && q < n && (s[q] == ' ' || s[q] == '.'))
            q++;
        Py_ssize_t next = read_digits(s, q, n, groups[g], digits + k);
        if (next < 0)
            break;
        q = next;
        k += groups[g];
    }
    if (g == 4) {
        Py_ssize_t end = number_match_end(s, q, n);
        if (end < 0)
            return -1;
        int ok, sum = 0;
        if (memcmp(digits, "356000000", 9) == 0) {     /* La Poste: digit sum a multiple of 5 */
            for (int i = 0; i < 14; i++) sum += digits[i] - '0';
            ok = sum % 5 == 0;
        } else {
            ok = luhn_digits(digits, 9) && luhn_digits(digits, 14);
        }
        if (ok) {
            memcpy(value, digits, 14);
            *len = 14;
        }
        return end;
    }
    /* SIREN grouped by spaces: exactly `NNN NNN NNN` */
    q = p;
    for (g = 0; g < 3; g++) {
        if (g > 0) {
            if (q >= n || s[q] != ' ') return -1;
            q++;
        }
        if ((q = read_digits(s, q, n, 3, digits + 3 * g)) < 0) return -1;
    }
    Py_ssize_t end = number_match_end(s, q, n);
    if (end < 0)
        return -1;
    if (q + 1 < n && (s[q] == ' ' || s[q] == '.') && is_digit(s[q + 1]))
        return end;                                     /* the first groups of a grouped SIRET */
    if (luhn_digits(digits, 9)) {
        memcpy(value, "siren:", 6);
        memcpy(value + 6, digits, 9);
        *len = 15;
    }
    return end;
}

/* RPPS: exactly 11 digits starting with 10, Luhn key (rpps.py). */
static inline Py_ssize_t rpps_at(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *value, Py_ssize_t *len)
{
    if (s[p] != '1' || p + 1 >= n || s[p + 1] != '0' || (p > 0 && is_digit(s[p - 1])))
        return -1;
    if (read_digits(s, p, n, 11, value) < 0)
        return -1;
    Py_ssize_t end = number_match_end(s, p + 11, n);
    if (end >= 0 && luhn_digits(value, 11))
        *len = 11;
    return end;
}

/* French phone numbers (phone.py): `0[1-9]` after anything but a digit or '+', or `+33` /
 * `0033` (after a non-digit), a separator and `(0)` allowed; then four pairs of digits, all
 * glued or all with the same separator. Value: "+33" and the nine significant digits. */
static inline Py_ssize_t phone_at(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *value, Py_ssize_t *len)
{
    Py_ssize_t q;
    int before_digit = p > 0 && is_digit(s[p - 1]);
    if (s[p] == '0' && p + 1 < n && s[p + 1] >= '1' && s[p + 1] <= '9' && !before_digit && (p == 0 || s[p - 1] != '+')) {
        q = p + 1;
    } else {
        if (p + 3 <= n && s[p] == '+' && s[p + 1] == '3' && s[p + 2] == '3')
            q = p + 3;
        else if (p + 4 <= n && !before_digit && memcmp(s + p, "0033", 4) == 0)
            q = p + 4;
        else
            return -1;
        if (q < n && (s[q] == ' ' || s[q] == '.' || s[q] == '-'))
            q++;
        if (q + 3 <= n && s[q] == '(' && s[q + 1] == '0' && s[q + 2] == ')')
            q += 3;
        if (q >= n || s[q] < '1' || s[q] > '9')
            return -1;
    }
    value[3] = (char)s[q++];
    unsigned char separators[4];
    for (int pair = 0; pair < 4; pair++) {
        separators[pair] = 0;
        if (q < n && (s[q] == ' ' || s[q] == '.' || s[q] == '-'))
            separators[pair] = s[q++];
        if ((q = read_digits(s, q, n, 2, value + 4 + 2 * pair)) < 0)
            return -1;
    }
    Py_ssize_t end = number_match_end(s, q, n);
    if (end < 0)
        return -1;
    int glued = !separators[0] && !separators[1] && !separators[2] && !separators[3];
    int same = separators[0] && separators[0] == separators[1] && separators[1] == separators[2] && separators[2] == separators[3];
    if (glued || same) {
        memcpy(value, "+33", 3);
        *len = 12;
    }
    return end;
}


static inline int upper_or_digit(unsigned char c) { return (c >= 'A' && c <= 'Z') || is_digit(c); }
static inline int is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static inline int is_alnum(unsigned char c) { return upper_or_digit(c) || (c >= 'a' && c <= 'z'); }
static Py_ssize_t iban_length_of(const char *s, Py_ssize_t n);

/* IBAN (iban.py): Hyperscan's `(?:^|[^A-Za-z0-9])[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}` at p, then the
 * longest `[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?` there, spaces
 * removed, cut to its longest prefix passing mod 97. */
static inline Py_ssize_t iban_at(const unsigned char *s, Py_ssize_t p, Py_ssize_t n, char *value, Py_ssize_t *len)
{
    if (p + 8 > n || (p > 0 && is_alnum(s[p - 1])) || !is_upper(s[p + 1]) || !is_digit(s[p + 2]) || !is_digit(s[p + 3]))
        return -1;
    Py_ssize_t end;
    if (s[p + 4] == ' ' && p + 9 <= n && upper_or_digit(s[p + 5]) && upper_or_digit(s[p + 6]) && upper_or_digit(s[p + 7]) && upper_or_digit(s[p + 8]))
        end = p + 9;
    else if (upper_or_digit(s[p + 4]) && upper_or_digit(s[p + 5]) && upper_or_digit(s[p + 6]) && upper_or_digit(s[p + 7]))
        end = p + 8;
    else
        return -1;
    memcpy(value, s + p, 4);
    Py_ssize_t k = 4, q = p + 4;
    int groups = 0;
    while (groups < 7) {                                    /* ( ?[A-Z0-9]{4}){2,7} */
        Py_ssize_t r = q < n && s[q] == ' ' ? q + 1 : q;
        if (r + 4 > n || !upper_or_digit(s[r]) || !upper_or_digit(s[r + 1]) || !upper_or_digit(s[r + 2]) || !upper_or_digit(s[r + 3]))
            break;
        memcpy(value + k, s + r, 4);
        k += 4;
        q = r + 4;
        groups++;
    }
    if (groups < 2)
        return end;
    Py_ssize_t r = q < n && s[q] == ' ' ? q + 1 : q;        /* ( ?[A-Z0-9]{1,4})? */
    if (!(r < n && upper_or_digit(s[r])))
        r = q;
    for (int t = 0; t < 4 && r < n && upper_or_digit(s[r]); t++)
        value[k++] = (char)s[r++];
    *len = iban_length_of(value, k);
    return end;
}

/* Lengths of the first run of digits that can begin each kind of number (bit L set). */
#define BIT(L) (1u << (L))
static const unsigned NIR_RUNS = BIT(1) | BIT(3) | BIT(5) | BIT(6) | BIT(7) | BIT(10) | BIT(13) | BIT(15);
static const unsigned SIRET_RUNS = BIT(3) | BIT(6) | BIT(9) | BIT(14);

/* The lists of scan_numbers, in the order it returns them; their names are the module's
 * NUMBER_KINDS, which watcher.detect checks against its own at import. */
enum { NIR, LOOSE_NIR, SIRET, RPPS, PHONE, IBAN, KINDS };
static const char *const KIND_NAMES[KINDS] = {
    [NIR] = "nir", [LOOSE_NIR] = "loose_nir", [SIRET] = "siret", [RPPS] = "rpps", [PHONE] = "phone", [IBAN] = "iban",
};
/* The numbers whose failed checks scan_numbers counts, in the order of its last item
 * (FAILED_KINDS, checked against watcher.detect.base.CHECKED). */
enum { FAILED_NIR, FAILED_SIRET, FAILED_RPPS, FAILED_KINDS };
static const char *const FAILED_NAMES[FAILED_KINDS] = {
    [FAILED_NIR] = "nir", [FAILED_SIRET] = "siret", [FAILED_RPPS] = "rpps",
};

static unsigned char NUMBER_START[256];  /* 1 for digits and '+', filled at import */

/* Append a found value to its list when its match ends in the window; -1 on error. */
static inline int keep(PyObject *lists[KINDS], int kind, const unsigned char *s, Py_ssize_t n, Py_ssize_t end,
                       Py_ssize_t lo, Py_ssize_t hi, const char *value, Py_ssize_t len)
{
    if (end < 0 || len == 0 || !in_window(s, n, end, lo, hi))
        return 0;
    return append_text(lists[kind], value, len);
}

/* One pass over the runs of digits: each run start is offered to the matchers its length
 * allows (a dense CSV has a run every few bytes; most are dates and amounts no matcher
 * wants; an IBAN is tried where a run follows two capital letters). Returns (nirs,
 * rarer-form nirs, sirets, rpps, phones, ibans) ending in (lo, hi]. */
static PyObject *scan_numbers(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t lo, hi;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &lo, &hi))
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len;
    PyObject *lists[KINDS] = {NULL};
    PyObject *result = NULL;
    Py_ssize_t failed[FAILED_KINDS] = {0};                             /* shaped, check failed */
    for (int k = 0; k < KINDS; k++)
        if (!(lists[k] = PyList_New(0))) goto done;
    char value[48];
    Py_ssize_t len, end;
    /* Every match ends at most 64 bytes after its start (a NIR with no-break spaces and a
     * named key ", clé : " 40, a grouped IBAN 42). */
    Py_ssize_t p = lo - 64 > 0 ? lo - 64 : 0, stop = hi < n ? hi : n;
    if (p > 0)
        while (p < stop && is_digit(s[p - 1]) && is_digit(s[p])) p++;   /* not inside a run */
    while (p < stop) {
        while (p < stop && !NUMBER_START[s[p]]) p++;       /* most bytes: one table look-up */
        if (p >= stop)
            break;
        unsigned char c = s[p];
        if (c == '+') {
            len = 0;
            end = phone_at(s, p, n, value, &len);
            if (keep(lists, PHONE, s, n, end, lo, hi, value, len) < 0) goto done;
            p++;
            continue;
        }
        if (p >= 2 && is_upper(s[p - 1]) && is_upper(s[p - 2])) {   /* FR76...: an IBAN's country code */
            len = 0;
            end = iban_at(s, p - 2, n, value, &len);
            if (keep(lists, IBAN, s, n, end, lo, hi, value, len) < 0) goto done;
        }
        Py_ssize_t run = p;
        while (run < n && is_digit(s[run])) run++;
        Py_ssize_t L = run - p;
        if (L <= 15 && (NIR_RUNS & BIT(L)) && c >= '1' && c <= '4') {
            end = match_nir(s, p, n, value + 1);
            if (end < 0 && L == 3)
                end = match_nir_thousands(s, p, n, value + 1);
            int tier = end < 0 ? -1 : check_nir(value + 1);
            if (tier == 0 && in_window(s, n, end, lo, hi))
                failed[FAILED_NIR]++;
            if (tier == 2)
                value[0] = '~';
            if (tier == 1 && keep(lists, NIR, s, n, end, lo, hi, value + 1, 15) < 0) goto done;
            if (tier == 2 && keep(lists, LOOSE_NIR, s, n, end, lo, hi, value, 16) < 0) goto done;
        }
        if (L <= 14 && (SIRET_RUNS & BIT(L))) {
            len = 0;
            end = siret_at(s, p, n, value, &len);
            if (end >= 0 && len == 0 && in_window(s, n, end, lo, hi))
                failed[FAILED_SIRET]++;
            if (keep(lists, SIRET, s, n, end, lo, hi, value, len) < 0) goto done;
        }
        if (L == 11 && c == '1' && s[p + 1] == '0') {
            len = 0;
            end = rpps_at(s, p, n, value, &len);
            if (end >= 0 && len == 0 && in_window(s, n, end, lo, hi))
                failed[FAILED_RPPS]++;
            if (keep(lists, RPPS, s, n, end, lo, hi, value, len) < 0) goto done;
        }
        /* 06 12 34 56 78 (the same separator after the first two pairs: not a date such as
         * 05-02;), 0612345678, 0033... */
        if (c == '0' && ((L == 2 && p + 5 < n && s[p + 5] == s[p + 2]) || L == 10 || L == 4 || L == 5 || L == 13)) {
            len = 0;
            end = phone_at(s, p, n, value, &len);
            if (keep(lists, PHONE, s, n, end, lo, hi, value, len) < 0) goto done;
        }
        p = run;
    }
    _Static_assert(KINDS == 6 && FAILED_KINDS == 3, "the format below holds one list per kind, one count per check");
    result = Py_BuildValue("(OOOOOO(nnn))", lists[NIR], lists[LOOSE_NIR], lists[SIRET], lists[RPPS], lists[PHONE],
                           lists[IBAN], failed[FAILED_NIR], failed[FAILED_SIRET], failed[FAILED_RPPS]);
done:
    for (int k = 0; k < KINDS; k++)
        Py_XDECREF(lists[k]);
    PyBuffer_Release(&view);
    return result;
}

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

/* ISO 7064 mod 97-10 of candidate[4:L] + candidate[:4]: the longest L >= 15 that passes, or 0. */
static Py_ssize_t iban_length_of(const char *s, Py_ssize_t n)
{
    if (n < 15 || n > 64)
        return 0;
    int head = 0, scale = 1, remainders[64];
    for (int k = 0; k < 4; k++) {
        int value = base36(s[k]);
        if (value < 0) return 0;
        head = (head * (value > 9 ? 100 : 10) + value) % 97;
        scale = (scale * (value > 9 ? 100 : 10)) % 97;
    }
    int remainder = 0;
    for (Py_ssize_t k = 4; k < n; k++) {
        int value = base36(s[k]);
        if (value < 0) return 0;
        remainder = (remainder * (value > 9 ? 100 : 10) + value) % 97;
        remainders[k] = remainder;
    }
    for (Py_ssize_t length = n; length >= 15; length--)
        if ((remainders[length - 1] * scale + head) % 97 == 1)
            return length;
    return 0;
}

static PyObject *iban_length(PyObject *self, PyObject *arg)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &n);
    if (!s)
        return NULL;
    return PyLong_FromSsize_t(iban_length_of(s, n));
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
    while (s < end) {
        const unsigned char *newline = memchr(s, '\n', end - s);
        if (!newline)
            break;
        for (const unsigned char *c = s; !content && c < newline; c++)
            content = *c != ' ' && *c != '\t' && *c != '\r';
        count += content;
        content = 0;
        s = newline + 1;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

static unsigned char BASE64[256];        /* 1 for A-Z a-z 0-9 + /, filled at import */

/* Length of the run of base64 characters starting at s[p]. */
static inline Py_ssize_t base64_length(const unsigned char *s, Py_ssize_t p, Py_ssize_t n)
{
    Py_ssize_t q = p;
    while (q < n && BASE64[s[q]]) q++;
    return q - p;
}

static PyObject *base64_run(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len;
    int found = 0;
    /* Both forms need a run of 56, and every such run covers one of the probed positions:
     * after a non-base64 byte at p, the next run of 56 holds p + 56 or starts after it. */
    for (Py_ssize_t p = 55; p < n && !found;) {
        if (!BASE64[s[p]]) {
            p += 56;
            continue;
        }
        Py_ssize_t a = p, b;
        while (a > 0 && BASE64[s[a - 1]]) a--;
        b = p + base64_length(s, p, n);
        if (b - a >= 120) {
            found = 1;
        } else if (b - a >= 56) {                           /* a line ending with 56... */
            Py_ssize_t q = b;
            if (q + 1 < n && s[q] == '\r' && s[q + 1] == '\n') q++;
            if (q < n && s[q] == '\n') {
                q++;
                while (q < n && (s[q] == ' ' || s[q] == '\t')) q++;
                found = base64_length(s, q, n) >= 56;       /* ...and the next starting with 56 */
            }
        }
        p = b + 56;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(found);
}

/* Valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF): what bytes.decode
 * accepts, without building the string (extract/decode.py checks every chunk). */
static PyObject *utf8_valid(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *s = view.buf;
    Py_ssize_t n = view.len, i = 0;
    int ok = 1;
    while (i < n) {
        if (i + 8 <= n) {                                   /* eight ASCII bytes at a time */
            uint64_t word;
            memcpy(&word, s + i, 8);
            if (!(word & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        unsigned char lo = 0x80, hi = 0xBF;                /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) extra = 1;
        else if (c == 0xE0) { extra = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) extra = 2;
        else if (c == 0xED) { extra = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) extra = 2;
        else if (c == 0xF0) { extra = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) extra = 3;
        else if (c == 0xF4) { extra = 3; hi = 0x8F; }
        else { ok = 0; break; }
        if (i + extra >= n || s[i + 1] < lo || s[i + 1] > hi) { ok = 0; break; }
        for (int k = 2; k <= extra; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) { ok = 0; break; }
        if (!ok) break;
        i += extra + 1;
    }
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

/* The 64-bit integer of 8 bytes read most significant first. */
static inline uint64_t big_endian_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap64(v);
#else
    v = 0;
    for (int b = 0; b < 8; b++)
        v = (v << 8) | p[b];
    return v;
#endif
}

/* Sorts n uniformly distributed 64-bit integers in place: four passes of a least
 * significant digit radix sort on the top 32 bits (256 buckets a pass: their counts and write
 * positions stay in the cache), then insertion, which only meets the rare neighbours that
 * share those bits (and equal values, which it leaves). The values are AES output under a
 * secret key, so nobody can make many of them share their top bits. 908,528 in ~5 ms, 4.5
 * million in ~30 (numpy's vectorized sort: 6 and 24). */
static int sort_uniform_u64(uint64_t *a, Py_ssize_t n)
{
    if (n > 64) {
        uint64_t *tmp = PyMem_RawMalloc((size_t)n * 8), *from = a, *to = tmp;
        if (!tmp)
            return -1;
        for (int shift = 32; shift < 64; shift += 8) {
            Py_ssize_t count[257] = {0};
            for (Py_ssize_t i = 0; i < n; i++)
                count[((from[i] >> shift) & 0xFF) + 1]++;
            for (int b = 0; b < 256; b++)
                count[b + 1] += count[b];
            for (Py_ssize_t i = 0; i < n; i++)
                to[count[(from[i] >> shift) & 0xFF]++] = from[i];
            uint64_t *swap = from;
            from = to;
            to = swap;
        }                               /* four passes: the values are back in `a` */
        PyMem_RawFree(tmp);
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        Py_ssize_t j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
    return 0;
}

/* The input of AES for the member fingerprints of NIRs each followed by `separator`
 * (watcher/watchlist/members.py): exactly one separator per 16-byte block, its last byte
 * (so every NIR is 15 bytes), and every block XOR `pad` (CMAC's K2 and padding). None when
 * the layout is not that. */
static PyObject *cmac_input(PyObject *self, PyObject *args)
{
    Py_buffer dv, pv;
    int separator;
    if (!PyArg_ParseTuple(args, "y*iy*", &dv, &separator, &pv))
        return NULL;
    PyObject *out = NULL;
    if (pv.len != 16) {
        PyErr_SetString(PyExc_ValueError, "cmac_input takes a 16-byte pad");
        goto done;
    }
    const unsigned char *s = dv.buf;
    Py_ssize_t n = dv.len;
    int ok = n % 16 == 0;
    for (Py_ssize_t i = 15; ok && i < n; i += 16)
        ok = s[i] == separator && !memchr(s + i - 15, separator, 15);
    if (!ok) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n);
    if (!out)
        goto done;
    unsigned char *x = (unsigned char *)PyBytes_AS_STRING(out);
    uint64_t pad[2], word[2];
    memcpy(pad, pv.buf, 16);
    for (Py_ssize_t i = 0; i < n; i += 16) {
        memcpy(word, s + i, 16);
        word[0] ^= pad[0];
        word[1] ^= pad[1];
        memcpy(x + i, word, 16);
    }
done:
    PyBuffer_Release(&dv);
    PyBuffer_Release(&pv);
    return out;
}

/* The member fingerprints of AES blocks (watcher/watchlist/members.py): the first 8 bytes of
 * each 16-byte block read big-endian, sorted ascending, each once, as native uint64. */
static PyObject *block_keys(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    if (view.len % 16) {
        PyErr_SetString(PyExc_ValueError, "block_keys takes 16-byte blocks");
        goto done;
    }
    Py_ssize_t n = view.len / 16, kept = 0;
    out = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!out)
        goto done;
    uint64_t *keys = (uint64_t *)PyBytes_AS_STRING(out);      /* bytes data is 8-aligned */
    const unsigned char *s = view.buf;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        keys[i] = big_endian_u64(s + 16 * i);
    failed = sort_uniform_u64(keys, n);
    if (!failed)
        for (Py_ssize_t i = 0; i < n; i++)
            if (!kept || keys[kept - 1] != keys[i])
                keys[kept++] = keys[i];
    Py_END_ALLOW_THREADS
    if (failed) {
        Py_CLEAR(out);
        PyErr_NoMemory();
    } else if (kept < n) {
        _PyBytes_Resize(&out, kept * 8);
    }
done:
    PyBuffer_Release(&view);
    return out;
}

/* The keys found among the members (both native uint64, ascending; members distinct), in
 * order. Each search starts where the previous one ended and doubles its step until it
 * passes the key, then bisects: sorted keys walk the list once, O(k log(n / k)). */
static PyObject *sorted_hits(PyObject *self, PyObject *args)
{
    Py_buffer mv, kv;
    if (!PyArg_ParseTuple(args, "y*y*", &mv, &kv))
        return NULL;
    PyObject *out = NULL;
    if (mv.len % 8 || kv.len % 8) {
        PyErr_SetString(PyExc_ValueError, "sorted_hits takes buffers of 64-bit integers");
        goto done;
    }
    Py_ssize_t n = mv.len / 8, k = kv.len / 8, found = 0;
    out = PyBytes_FromStringAndSize(NULL, k * 8);
    if (!out)
        goto done;
    const unsigned char *m = mv.buf, *q = kv.buf;
    unsigned char *hit = (unsigned char *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t lo = 0;
    for (Py_ssize_t i = 0; i < k && lo < n; i++) {
        uint64_t x, v = 0;
        memcpy(&x, q + 8 * i, 8);
        Py_ssize_t step = 1, hi = lo;           /* the first member >= x is in [lo, hi] */
        while (hi < n) {
            memcpy(&v, m + 8 * hi, 8);
            if (v >= x)
                break;
            lo = hi + 1;
            hi = lo + step;
            step <<= 1;
        }
        if (hi > n)
            hi = n;
        while (lo < hi) {
            Py_ssize_t mid = lo + (hi - lo) / 2;
            memcpy(&v, m + 8 * mid, 8);
            if (v < x)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n) {
            memcpy(&v, m + 8 * lo, 8);
            if (v == x)
                memcpy(hit + 8 * found++, &x, 8);
        }
    }
    Py_END_ALLOW_THREADS
    if (found < k)
        _PyBytes_Resize(&out, found * 8);
done:
    PyBuffer_Release(&mv);
    PyBuffer_Release(&kv);
    return out;
}

static PyMethodDef methods[] = {
    {"scan_numbers", scan_numbers, METH_VARARGS, "(nirs, rarer-form nirs, sirets, rpps, phones, ibans) whose matches end in (lo, hi]."},
    {"luhn_ok", luhn_ok, METH_O, "True when the Luhn checksum of a string of digits is 0."},
    {"base64_run", base64_run, METH_O, "True when the bytes hold a base64 block worth decoding (see blobs.py)."},
    {"utf8_valid", utf8_valid, METH_O, "True when the bytes are valid UTF-8 (what bytes.decode accepts)."},
    {"count_lines", count_lines, METH_O, "Newlines that end a line holding something (blank lines are not records)."},
    {"iban_length", iban_length, METH_O, "Longest length >= 15 at which an IBAN candidate passes mod 97, or 0."},
    {"cmac_input", cmac_input, METH_VARARGS, "NIR blocks XOR CMAC's pad, or None when not one separator at the end of each 16-byte block."},
    {"block_keys", block_keys, METH_O, "The big-endian first 8 bytes of each 16-byte block, sorted, distinct, as native uint64."},
    {"sorted_hits", sorted_hits, METH_VARARGS, "The sorted keys found among the sorted members (native uint64 buffers)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

/* module.<attribute> = tuple of the names; -1 on error. */
static int add_names(PyObject *m, const char *attribute, const char *const *names, int count)
{
    PyObject *tuple = PyTuple_New(count);
    for (int k = 0; tuple && k < count; k++) {
        PyObject *name = PyUnicode_FromString(names[k]);
        if (!name)
            Py_CLEAR(tuple);
        else
            PyTuple_SET_ITEM(tuple, k, name);
    }
    int status = tuple ? PyModule_AddObjectRef(m, attribute, tuple) : -1;
    Py_XDECREF(tuple);
    return status;
}

PyMODINIT_FUNC PyInit__speedups(void)
{
    for (int c = 0; c < 256; c++)
        NUMBER_START[c] = is_digit((unsigned char)c) || c == '+';
    for (int c = 0; c < 256; c++)
        BASE64[c] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    PyObject *m = PyModule_Create(&module);
    if (m && (add_names(m, "NUMBER_KINDS", KIND_NAMES, KINDS) < 0
              || add_names(m, "FAILED_KINDS", FAILED_NAMES, FAILED_KINDS) < 0))
        Py_CLEAR(m);
    return m;
}
