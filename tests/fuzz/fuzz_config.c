/*
 * fuzz_config - libFuzzer target for the configuration reader (core/config.c
 * over inih): any file gives either a configuration or a clear error.
 */
#include "core/config.h"
#include "core/log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof path, "/tmp/mxw-fuzz-config-%d.conf", (int)getpid());
    log_set_level(LOG_LEVEL_FATAL); /* unknown keys warn; that is expected here */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    FILE *f = fopen(path, "wb");
    if (f == NULL) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    config_defaults(&c);
    if (config_load(path, &c) != 0 && err_msg()[0] == '\0') __builtin_trap();
    return 0;
}
