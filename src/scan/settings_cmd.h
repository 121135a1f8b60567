/*
 * settings_cmd - `mxwarden settings`: edit and inspect the per-recipient
 * action settings (scan/settings.h) from the command line.
 *
 *   settings set SCOPE KEY VALUE [KEY VALUE]...   all pairs validated and written together
 *   settings get SCOPE [KEY]                      effective value(s) and where each comes from
 *   settings list [SCOPE]                         stored rows: SCOPE<TAB>KEY<TAB>VALUE<TAB>UPDATED
 *   settings unset SCOPE KEY...                   back to inheriting (absent keys are fine)
 * SCOPE is "global", a domain ("example.org") or an address ("bob@example.org").
 */
#ifndef MXW_SETTINGS_CMD_H
#define MXW_SETTINGS_CMD_H

#include <stdio.h>

/*
 * Runs the command in argv[1..argc) (argv[0] is "settings" and is ignored)
 * against the records database at db_uri (NULL: DB_URI_DEFAULT). Results go
 * to out, diagnostics (one line, starting "mxwarden settings: ") to err.
 * Returns the exit status: 0 done; 1 the database could not be opened, read
 * or written; 2 a usage error or an invalid scope, key or value.
 */
int settings_command(int argc, char **argv, const char *db_uri, FILE *out, FILE *err);

#endif
