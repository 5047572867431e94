/* The Kamailio headers bindgen reads, and the interface of shim.c. build.rs passes -I<kamailio>/src
 * and Kamailio's own -D set. */
#ifndef PUSH_WRAPPER_H
#define PUSH_WRAPPER_H

#include "core/sr_module.h"
#include "core/pt.h"
#include "core/rpc.h"
#include "core/counters.h"
#include "core/dprint.h"
#include "core/mod_fix.h"
#include "core/route.h"
#include "core/cfg/cfg_struct.h"
#include "core/parser/msg_parser.h"

/* A view of a Kamailio string (not NUL-terminated; valid while the message or contact lives). */
typedef struct push_strv {
	const char *s;
	int len;
} push_strv_t;

typedef struct push_call_info {
	push_strv_t call_id;
	push_strv_t from_uri;
	push_strv_t from_name;
	push_strv_t ruri_user;
	push_strv_t ruri_host;
	int is_invite;
	int is_message;
	/* MESSAGE only: the Content-Type header's value and the body (not NUL-terminated). */
	push_strv_t content_type;
	push_strv_t body;
} push_call_info_t;

#define PUSH_MAX_CONTACT_HEADERS 16

typedef struct push_register_info {
	push_strv_t to_user;
	push_strv_t to_host;
	push_strv_t user_agent;
	int expires; /* Expires header, -1 if none */
	int is_reply;
	int contact_count;
	push_strv_t contacts[PUSH_MAX_CONTACT_HEADERS];
} push_register_info_t;

typedef struct push_contact_event {
	int type; /* UL_CONTACT_INSERT/UPDATE/DELETE/EXPIRE */
	push_strv_t aor;
	push_strv_t contact;
	push_strv_t instance;
	push_strv_t user_agent;
	push_strv_t received;
	unsigned int reg_id;
	long expires;
} push_contact_event_t;

enum push_suspend_result {
	PUSH_SUSPEND_OK = 0,
	PUSH_SUSPEND_RETRANSMISSION = 1,
	PUSH_SUSPEND_NO_TRANSACTION = 2,
	PUSH_SUSPEND_ALREADY_REPLIED = 3,
	PUSH_SUSPEND_CANCELED = 4,
	PUSH_SUSPEND_FAILED = 5,
	/* the transaction has fewer than 2 branches left (max_branches): one for tm's blind branch
	 * while held, one at least for the relay after the device wakes */
	PUSH_SUSPEND_NO_BRANCH = 6
};

/* usrloc callback types (modules/usrloc/ul_callback.h) and tm callback types used here. */
enum push_event_types {
	PUSH_UL_INSERT = (1 << 0),
	PUSH_UL_UPDATE = (1 << 1),
	PUSH_UL_DELETE = (1 << 2),
	PUSH_UL_EXPIRE = (1 << 3),
	PUSH_TM_RESPONSE_OUT = (1 << 9),
	PUSH_TM_DESTROY = (1 << 17),
	PUSH_TM_E2ECANCEL_IN = (1 << 18)
};

/* xhttp_prom updates (push_shim_prom_update's op). */
enum push_prom_op {
	PUSH_PROM_COUNTER_INC = 0,
	PUSH_PROM_COUNTER_RESET = 1,
	PUSH_PROM_GAUGE_SET = 2,
	PUSH_PROM_HISTOGRAM_OBSERVE = 3,
	PUSH_PROM_OPS = 4
};

/* shim.c */
int push_shim_log_enabled(int level);
int push_shim_counter_was_reset(int i, const char *name);
int push_shim_counter_mark(int i, const char *name);
int push_shim_prom_loaded(void);
int push_shim_prom_create(const char *param, const char *spec);
int push_shim_prom_bind(void);
int push_shim_prom_update(int op, const char *name, int count, const char *number,
		const char **labels, int nlabels);
void push_shim_log(int level, const char *where, const char *msg);
int push_shim_debug_level(void);
void push_shim_cfg_update(void);
int push_shim_bind_tm(void);
int push_shim_bind_usrloc(int *use_domain);
int push_shim_route_lookup(const char *name);
int push_shim_bind_registrar(void);
int push_shim_append_branches(unsigned int index, unsigned int label, const char *table);
int push_shim_call_info(struct sip_msg *msg, push_call_info_t *out);
int push_shim_register_info(struct sip_msg *msg, push_register_info_t *out);
int push_shim_param_str(struct sip_msg *msg, char *param, push_strv_t *out);
int push_shim_suspend(struct sip_msg *msg, unsigned int timeout_ms, unsigned int *index,
		unsigned int *label);
int push_shim_cancel_suspend(unsigned int index, unsigned int label);
int push_shim_continue(unsigned int index, unsigned int label, int route);
int push_shim_end(unsigned int index, unsigned int label, int status, int code, const char *reason,
		int failure_route);
/* Kamailio's main process calls `cb` when it begins shutting down, before it signals the other
 * processes (core app_shutdown callback; a callback set before, systemdops', still runs). */
void push_shim_on_shutdown(void (*cb)(void));
int push_shim_register_ulcb(void);
int push_shim_register_script_cbs(void);
int push_shim_add_reply_header(struct sip_msg *msg, const char *hdr, int len);
struct sip_msg *push_shim_current_request(void);
int push_shim_current_request_kind(void);
int push_shim_kemi_register(void);
int push_shim_resume_after_reply(struct sip_msg *msg, const char *aor, int len, void **handle);
/* Calls off a resume deferred by push_shim_resume_after_reply (same process, before the reply
 * goes out). */
void push_shim_resume_call_off(void *handle);
int push_shim_kemi_engine(void);
int push_shim_continue_kemi(unsigned int index, unsigned int label, const char *name, int len);

/* DMQ (enable_dmq): registers the peer `peer_id` (mod_init, dmq loaded before): 0, or -1 (dmq not
 * loaded), -2 (API not bound), -3 (peer refused). The peer's messages go to push_rs_dmq_message. */
int push_shim_bind_dmq(const char *peer_id);
/* Sends `body` to every other active DMQ node (a Kamailio process: tm sends it); 0 or -1. */
int push_shim_dmq_bcast(const char *body, int len);
/* Sets the request's destination URI ($du); 0 or -1. */
int push_shim_set_dst_uri(struct sip_msg *msg, const char *uri, int len);

/* Defined in Rust (src/callbacks.rs), called from shim.c. */
int push_rs_dmq_message(const char *body, int len, const char *from, int from_len,
		const char *call_id, int call_id_len);
void push_rs_tm_event(unsigned int index, unsigned int label, int type, int code);
void push_rs_contact_event(const push_contact_event_t *ev);
void push_rs_script_edge(int post);
void push_rs_resume_after_reply(const char *aor, int len);

/* KEMI functions, defined in Rust (src/script.rs); `str` arguments arrive as views. */
int push_rs_kemi_suspend(struct sip_msg *msg);
int push_rs_kemi_suspend_aor(struct sip_msg *msg, push_strv_t *aor);
int push_rs_kemi_resume(struct sip_msg *msg);
int push_rs_kemi_resume_aor(struct sip_msg *msg, push_strv_t *aor);
int push_rs_kemi_register(struct sip_msg *msg);
int push_rs_kemi_check(struct sip_msg *msg);
int push_rs_kemi_failed(struct sip_msg *msg);
int push_rs_kemi_cluster_relay(struct sip_msg *msg);

#endif
