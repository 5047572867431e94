/* The Kamailio headers bindgen reads. build.rs passes -I<kamailio>/src and Kamailio's own -D set. */
#include "core/sr_module.h"
#include "core/pt.h"
#include "core/rpc.h"
#include "core/dprint.h"
#include "core/cfg/cfg_struct.h"
#include "core/parser/msg_parser.h"

/* Functions of shim.c: Kamailio API that exists only as macros or static inline functions. */
int push_shim_log_enabled(int level);
void push_shim_log(int level, const char *where, const char *msg);
int push_shim_debug_level(void);
void push_shim_cfg_update(void);
