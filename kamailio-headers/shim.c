/* Kamailio API that bindgen cannot call: macros and static inline functions, wrapped in real functions.
 * Compiled by build.rs with Kamailio's own -D set, so the macros expand as they do inside Kamailio. */
#include "core/dprint.h"
#include "core/cfg/cfg_struct.h"

/* Is a message of this level printed for this module? Checked before Rust formats anything. */
int push_shim_log_enabled(int level)
{
	return is_printable(level);
}

/* The module's debug level as Kamailio sees it (core debug or a per-module override). */
int push_shim_debug_level(void)
{
	return get_debug_level(LOG_MNAME, LOG_MNAME_LEN);
}

/* One log line through Kamailio's logger (stderr or syslog, with its prefixes and level checks). */
void push_shim_log(int level, const char *where, const char *msg)
{
	LOG_FX(DEFAULT_FACILITY, level, NULL, "push: ", where, "%s\n", msg);
}

/* Picks up configuration changes made through the cfg framework (cfg_update is a macro). */
void push_shim_cfg_update(void)
{
	cfg_update();
}
