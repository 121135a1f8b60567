/*
 * fuzz_mbox - libFuzzer target for the mbox splitter (message/source.c):
 * every message it hands out must lie inside the input.
 */
#include "message/source.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

struct bounds {
    const char *start, *end;
};

static int check_message(void *ctx, const char *label, const char *data, size_t len)
{
    const struct bounds *b = ctx;
    (void)label;
    if (data < b->start || data + len > b->end || len == 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bounds b = {(const char *)data, (const char *)data + size};
    source_mbox_each("fuzz", (const char *)data, size, check_message, &b);
    return 0;
}
