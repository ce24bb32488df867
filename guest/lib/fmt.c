/*
 * A small printf formatter (no floating point: the guest has no FPU state to use).
 * Conversions: %d %i %u %x %X %c %s %p %%, length modifiers hh h l ll z j t, flags
 * '-' '0' and a width (number or '*'), a precision for %s. Output is always
 * NUL-terminated when size > 0; the return value is the length the full output would
 * have (as snprintf). Shared by the guest and the host-side tests (HNF_HOST).
 */
#include "hnf.h"

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size) o->buf[o->len] = c;
    o->len++;
}

static void pad(struct out *o, int n, char c)
{
    while (n-- > 0) put(o, c);
}

static void number(struct out *o, uint64_t v, int neg, unsigned base, int upper, int width, int left, int zero)
{
    char tmp[24];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v != 0);
    int len = n + (neg ? 1 : 0);
    if (!left && !zero) pad(o, width - len, ' ');
    if (neg) put(o, '-');
    if (!left && zero) pad(o, width - len, '0');
    while (n > 0) put(o, tmp[--n]);
    if (left) pad(o, width - len, ' ');
}

int hnf_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            put(&o, *p);
            continue;
        }
        p++;
        int left = 0, zero = 0, width = 0, prec = -1, lng = 0;
        for (;; p++) {
            if (*p == '-') left = 1;
            else if (*p == '0') zero = 1;
            else break;
        }
        if (*p == '*') {
            width = va_arg(ap, int);
            if (width < 0) left = 1, width = -width;
            p++;
        } else {
            while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            prec = 0;
            if (*p == '*') {
                prec = va_arg(ap, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9') prec = prec * 10 + (*p++ - '0');
            }
        }
        for (;; p++) {
            if (*p == 'l') lng++;
            else if (*p == 'z' || *p == 'j' || *p == 't') lng = 2;
            else if (*p == 'h') { /* promoted to int anyway */ }
            else break;
        }
        switch (*p) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            number(&o, m, v < 0, 10, 0, width, left, zero);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            number(&o, v, 0, *p == 'u' ? 10 : 16, *p == 'X', width, left, zero);
            break;
        }
        case 'p': {
            uint64_t v = (uint64_t)(uintptr_t)va_arg(ap, void *);
            put(&o, '0');
            put(&o, 'x');
            number(&o, v, 0, 16, 0, width > 2 ? width - 2 : 0, left, zero);
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!left) pad(&o, width - 1, ' ');
            put(&o, c);
            if (left) pad(&o, width - 1, ' ');
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == 0) s = "(null)";
            int n = 0;
            while (s[n] && (prec < 0 || n < prec)) n++;
            if (!left) pad(&o, width - n, ' ');
            for (int i = 0; i < n; i++) put(&o, s[i]);
            if (left) pad(&o, width - n, ' ');
            break;
        }
        case '%':
            put(&o, '%');
            break;
        case 0:
            p--; /* a lone '%' at the end */
            break;
        default: /* unknown conversion: print it as written */
            put(&o, '%');
            put(&o, *p);
            break;
        }
    }
    if (size > 0) buf[o.len < size ? o.len : size - 1] = 0;
    return (int)o.len;
}

int hnf_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = hnf_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
