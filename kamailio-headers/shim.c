/* Kamailio API that bindgen cannot call, or that is clearer in C: macros, static inline functions,
 * header parsing, and the tm/usrloc bindings. Compiled by build.rs with Kamailio's own -D set, so the
 * macros expand as they do inside Kamailio. Rust reaches these through the declarations in wrapper.h;
 * the push_rs_* functions called from here are defined in Rust (src/). */
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <pthread.h>
#include "core/dprint.h"
#include "core/cfg/cfg_struct.h"
#include "core/sr_module.h"
#include "core/mod_fix.h"
#include "core/route.h"
#include "core/script_cb.h"
#include "core/data_lump_rpl.h"
#include "core/data_lump.h"
#include "core/mem/mem.h"
#include "core/mem/shm_mem.h"
#include "core/kemi.h"
#include "core/counters.h"
#include "core/modparam.h"
#include "core/events.h"
#include "core/globals.h"
#include "core/action.h"
#include "core/parser/msg_parser.h"
#include "core/parser/parse_from.h"
#include "core/parser/parse_to.h"
#include "core/parser/parse_uri.h"
#include "core/parser/parse_expires.h"
#include "core/parser/parse_content.h"
#include "modules/tm/tm_load.h"
#include "modules/usrloc/usrloc.h"
#include "modules/registrar/api.h"
#include "modules/dmq/bind_dmq.h"
#include "wrapper.h"

_Static_assert(PUSH_UL_INSERT == UL_CONTACT_INSERT && PUSH_UL_UPDATE == UL_CONTACT_UPDATE
		&& PUSH_UL_DELETE == UL_CONTACT_DELETE && PUSH_UL_EXPIRE == UL_CONTACT_EXPIRE,
		"usrloc callback types differ from wrapper.h");
_Static_assert(PUSH_TM_RESPONSE_OUT == TMCB_RESPONSE_OUT && PUSH_TM_DESTROY == TMCB_DESTROY
		&& PUSH_TM_E2ECANCEL_IN == TMCB_E2ECANCEL_IN,
		"tm callback types differ from wrapper.h");

static struct tm_binds tmb;
static usrloc_api_t ulb;
static int have_usrloc = 0;
static registrar_api_t regb;
static int have_registrar = 0;

/* ---- logging ---------------------------------------------------------------------------------- */

int push_shim_log_enabled(int level)
{
	return is_printable(level);
}

int push_shim_debug_level(void)
{
	return get_debug_level(LOG_MNAME, LOG_MNAME_LEN);
}

void push_shim_log(int level, const char *where, const char *msg)
{
	LOG_FX(DEFAULT_FACILITY, level, NULL, "push: ", where, "%s\n", msg);
}

/* cfg_update() takes the cfg framework's global lock (CFG_LOCK in cfg_update_local). Kamailio's
 * SIGTERM/SIGINT/SIGUSR1 handler for child processes calls cfg_update_no_cbs(), which takes the
 * same lock: a signal arriving while this thread holds it would deadlock the handler on a lock
 * its own process holds, and every other child's handler would then wait on it forever (the
 * "stuck in futex_wait after signal 15" shutdowns). The push dispatcher updates every 100 ms, so
 * it keeps those signals blocked while it does; a pending one is handled right after. */
void push_shim_cfg_update(void)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	cfg_update();
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- binding other modules --------------------------------------------------------------------- */

int push_shim_bind_tm(void)
{
	return load_tm_api(&tmb);
}

int push_shim_bind_usrloc(int *use_domain)
{
	bind_usrloc_t bind = (bind_usrloc_t)find_export("ul_bind_usrloc", 1, 0);
	if(!bind || bind(&ulb) < 0)
		return -1;
	have_usrloc = 1;
	*use_domain = ulb.use_domain;
	return 0;
}

int push_shim_bind_registrar(void)
{
	bind_registrar_f bind = (bind_registrar_f)find_export("bind_registrar", 0, 0);
	if(!bind || bind(&regb) < 0)
		return -1;
	have_registrar = 1;
	return 0;
}

int push_shim_route_lookup(const char *name)
{
	return route_lookup(&main_rt, (char *)name);
}

/* ---- request data ------------------------------------------------------------------------------ */

static void strv(push_strv_t *dst, str *src)
{
	if(src && src->s && src->len > 0) {
		dst->s = src->s;
		dst->len = src->len;
	} else {
		dst->s = NULL;
		dst->len = 0;
	}
}

int push_shim_call_info(struct sip_msg *msg, push_call_info_t *out)
{
	struct to_body *from;
	memset(out, 0, sizeof(*out));
	if(parse_headers(msg, HDR_CALLID_F | HDR_FROM_F, 0) < 0 || !msg->callid)
		return -1;
	strv(&out->call_id, &msg->callid->body);
	if(parse_from_header(msg) < 0)
		return -1;
	from = get_from(msg);
	strv(&out->from_uri, &from->uri);
	strv(&out->from_name, &from->display);
	if(msg->first_line.type == SIP_REQUEST) {
		if(parse_sip_msg_uri(msg) < 0)
			return -1;
		strv(&out->ruri_user, &msg->parsed_uri.user);
		strv(&out->ruri_host, &msg->parsed_uri.host);
		out->is_invite = (msg->first_line.u.request.method_value == METHOD_INVITE);
		out->is_message = (msg->first_line.u.request.method_value == METHOD_MESSAGE);
	}
	if(out->is_message) {
		char *body;
		int len;
		if(parse_headers(msg, HDR_CONTENTTYPE_F | HDR_CONTENTLENGTH_F, 0) == 0) {
			if(msg->content_type)
				strv(&out->content_type, &msg->content_type->body);
			body = get_body(msg);
			if(body && msg->content_length) {
				len = get_content_length(msg);
				/* never past the end of the buffer, whatever Content-Length says */
				if(len > (msg->buf + msg->len) - body)
					len = (msg->buf + msg->len) - body;
				if(len > 0) {
					out->body.s = body;
					out->body.len = len;
				}
			}
		}
	}
	return 0;
}

int push_shim_register_info(struct sip_msg *msg, push_register_info_t *out)
{
	struct hdr_field *h;
	struct to_body *to;
	struct sip_uri uri;
	int n = 0;
	memset(out, 0, sizeof(*out));
	if(parse_headers(msg, HDR_EOH_F, 0) < 0 || !msg->to)
		return -1;
	to = get_to(msg);
	if(!to || parse_uri(to->uri.s, to->uri.len, &uri) < 0)
		return -1;
	strv(&out->to_user, &uri.user);
	strv(&out->to_host, &uri.host);
	if(msg->user_agent)
		strv(&out->user_agent, &msg->user_agent->body);
	out->expires = -1;
	if(msg->expires && parse_expires(msg->expires) == 0 && msg->expires->parsed)
		out->expires = ((exp_body_t *)msg->expires->parsed)->val;
	for(h = msg->contact; h && n < PUSH_MAX_CONTACT_HEADERS; h = h->next) {
		if(h->type == HDR_CONTACT_T)
			strv(&out->contacts[n++], &h->body);
	}
	out->contact_count = n;
	out->is_reply = (msg->first_line.type == SIP_REPLY);
	return 0;
}

int push_shim_param_str(struct sip_msg *msg, char *param, push_strv_t *out)
{
	str s = STR_NULL;
	if(get_str_fparam(&s, msg, (fparam_t *)param) < 0)
		return -1;
	strv(out, &s);
	return 0;
}

/* ---- tm ----------------------------------------------------------------------------------------- */

static void tm_event(struct cell *t, int type, struct tmcb_params *ps)
{
	struct cell *cancel;
	if(type == TMCB_E2ECANCEL_IN && (t->flags & T_ASYNC_SUSPENDED) && ps && ps->req) {
		/* A CANCEL for a call still held. tm's e2e_cancel answers a suspended INVITE 487 before
		 * it answers the CANCEL 200 (it has no branch to cancel); answer the CANCEL first, as for
		 * any other call. The CANCEL's transaction is the current one in this process; tm's own
		 * 200 that follows finds it answered and is not sent. */
		cancel = tmb.t_gett();
		if(cancel != NULL && cancel != T_UNDEFINED && cancel != t
				&& cancel->uas.status < 200) {
			if(tmb.t_reply(ps->req, 200, "ok -- no more pending branches") < 0)
				LM_WARN("cannot answer the CANCEL of a held call first\n");
		}
	}
	push_rs_tm_event(t->hash_index, t->label, type, ps ? ps->code : 0);
}

/* push_resume() in an onreply_route (a gateway relaying the backend's 200 to a REGISTER): the held
 * calls are continued only once that reply has gone out, so the INVITE cannot overtake it. */
static void after_reply_out(struct cell *t, int type, struct tmcb_params *ps)
{
	str *aor;
	if(ps == NULL || ps->param == NULL || *ps->param == NULL || ps->code < 200)
		return;
	aor = (str *)*ps->param;
	if(aor->len > 0) {
		push_rs_resume_after_reply(aor->s, aor->len);
		aor->len = 0; /* once */
	}
}

static void free_aor(void *param)
{
	shm_free(param);
}

/* Returns 0 when the resume was deferred until the reply is sent, -2 when `msg` is not a reply
 * relayed by tm (resume at once), -1 on error. */
int push_shim_resume_after_reply(struct sip_msg *msg, const char *aor, int len, void **handle)
{
	struct cell *t;
	str *copy;

	*handle = NULL;
	if(msg == NULL || msg->first_line.type != SIP_REPLY)
		return -2;
	t = tmb.t_gett();
	if(t == NULL || t == T_UNDEFINED)
		return -2;
	copy = shm_malloc(sizeof(str) + len);
	if(copy == NULL)
		return -1;
	copy->s = (char *)(copy + 1);
	copy->len = len;
	memcpy(copy->s, aor, len);
	if(tmb.register_tmcb(0, t, TMCB_RESPONSE_OUT, after_reply_out, copy, free_aor) <= 0) {
		shm_free(copy);
		return -1;
	}
	*handle = copy;
	return 0;
}

void push_shim_resume_call_off(void *handle)
{
	if(handle != NULL)
		((str *)handle)->len = 0;
}

int push_shim_suspend(struct sip_msg *msg, unsigned int timeout_ms, unsigned int *index,
		unsigned int *label)
{
	struct cell *t = tmb.t_gett();
	int ret;
	if(t == NULL || t == T_UNDEFINED) {
		ret = tmb.t_newtran(msg);
		if(ret == 0)
			return PUSH_SUSPEND_RETRANSMISSION;
		if(ret < 0)
			return PUSH_SUSPEND_NO_TRANSACTION;
		t = tmb.t_gett();
		if(t == NULL || t == T_UNDEFINED)
			return PUSH_SUSPEND_NO_TRANSACTION;
	}
	if(t->uas.status >= 200)
		return PUSH_SUSPEND_ALREADY_REPLIED;
	if(t->nr_of_outgoings + 2 > sr_dst_max_branches)
		return PUSH_SUSPEND_NO_BRANCH;
	if(timeout_ms > 0 && tmb.set_fr(msg, timeout_ms, timeout_ms) < 0)
		return PUSH_SUSPEND_FAILED;
	/* TMCB_RESPONSE_OUT also fires, after the call was continued and relayed, for the final reply
	 * tm relays from a branch (t_reply.c relay_reply: ps->code is the relayed code), so a 2xx
	 * from the device that answered tells the dispatcher the call was answered elsewhere for
	 * the devices that did not join it (end-of-call pushes); a locally generated final reply
	 * (_reply_light) fires it too. */
	if(tmb.register_tmcb(msg, 0,
			TMCB_DESTROY | TMCB_E2ECANCEL_IN | TMCB_RESPONSE_OUT, tm_event, 0, 0) <= 0)
		return PUSH_SUSPEND_FAILED;
	ret = tmb.t_suspend(msg, index, label);
	if(ret == 1)
		return PUSH_SUSPEND_CANCELED;
	if(ret < 0)
		return PUSH_SUSPEND_FAILED;
	return 0;
}

/* Ending a held call from the dispatcher (the wait timed out, or no push could be delivered):
 * t_continue runs `end_action`, a one-action route calling end_held(). */
static int end_status = 408;
static int end_failure_route = 1;
static int end_code = 480;
static char *end_reason = "Temporarily Unavailable";

/* Runs as the continued route (failure-route context, on tm's copy of the request): the failure
 * route the script armed before push_suspend() decides first, seeing `end_status` as the branch's
 * status (408 for a timeout, as when tm's timer fires); if it neither answered nor relayed, the
 * call is answered `end_code`. */
static int end_held(struct sip_msg *msg, char *p1, char *p2)
{
	struct cell *t = tmb.t_gett();
	int on_failure, b;
	sr_kemi_eng_t *keng;

	if(t == NULL || t == T_UNDEFINED)
		return -1;
	b = t->async_backup.blind_uac;
	if(b >= 0 && b < t->nr_of_outgoings)
		t->uac[b].last_received = end_status;
	on_failure = end_failure_route ? t->on_failure : 0;
	if(on_failure > 0) {
		/* as tm does before a failure route: run once unless the route arms it again */
		t->on_failure = 0;
		keng = sr_kemi_eng_get();
		if(keng != NULL) {
			if(sr_kemi_route(keng, msg, FAILURE_ROUTE, sr_kemi_cbname_lookup_idx(on_failure),
					   NULL) < 0)
				LM_ERR("error running the failure route of a held call\n");
		} else if(on_failure < failure_rt.entries && failure_rt.rlist[on_failure]) {
			if(run_top_route(failure_rt.rlist[on_failure], msg, 0) < 0)
				LM_ERR("error running the failure route of a held call\n");
		}
	}
	if(t->uas.status >= 200)
		return 1;
	for(b = 0; b < t->nr_of_outgoings; b++) {
		if(t->uac[b].last_received < 200)
			return 1; /* the failure route relayed it */
	}
	if(tmb.t_reply(msg, end_code, end_reason) < 0)
		LM_ERR("cannot answer a held call %d\n", end_code);
	return 1;
}

static ksr_cmd_export_t end_cmd = {"push:end_held", end_held, 0, 0, 0, FAILURE_ROUTE, 0, 0};
static struct action end_action;

/* Ends the held transaction: `status` is what its failure route sees (t_check_status,
 * $T_reply_code), `code`/`reason` the answer when that route does not decide; with
 * `failure_route` 0 the failure route is not run (shutdown). Same results as
 * push_shim_continue. */
int push_shim_end(unsigned int index, unsigned int label, int status, int code, const char *reason,
		int failure_route)
{
	if(end_action.type != MODULE0_T) {
		memset(&end_action, 0, sizeof(end_action));
		end_action.type = MODULE0_T;
		end_action.count = 2;
		end_action.cfile = "push";
		end_action.rname = "push:end_held";
		end_action.val[0].type = MODEXP_ST;
		end_action.val[0].u.data = &end_cmd;
		end_action.val[1].type = NUMBER_ST;
		end_action.val[1].u.number = 0;
	}
	end_status = status;
	end_failure_route = failure_route;
	end_code = code;
	end_reason = (char *)reason;
	return tmb.t_continue(index, label, &end_action);
}

static void (*shutdown_cb)(void) = NULL;
static sr_corecb_void_f shutdown_before = NULL;

static void push_app_shutdown(void)
{
	if(shutdown_cb != NULL)
		shutdown_cb();
	if(shutdown_before != NULL)
		shutdown_before();
}

void push_shim_on_shutdown(void (*cb)(void))
{
	sr_corecb_t *cbp = sr_corecb_get();
	if(cbp == NULL)
		return;
	shutdown_cb = cb;
	if(cbp->app_shutdown != push_app_shutdown) {
		shutdown_before = cbp->app_shutdown;
		cbp->app_shutdown = push_app_shutdown;
	}
}

int push_shim_cancel_suspend(unsigned int index, unsigned int label)
{
	return tmb.t_cancel_suspend(index, label);
}

int push_shim_continue(unsigned int index, unsigned int label, int route)
{
	if(route < 0 || route >= main_rt.entries || main_rt.rlist[route] == NULL)
		return -10;
	return tmb.t_continue(index, label, main_rt.rlist[route]);
}

/* With a KEMI engine (cfgengine "lua", ...): continue into the script function `name`; it runs
 * like a failure route and gets the event name "push:resume". */
int push_shim_continue_kemi(unsigned int index, unsigned int label, const char *name, int len)
{
	str cbname = {(char *)name, len};
	str cbparam = str_init("push:resume");
	return tmb.t_continue_cb(index, label, &cbname, &cbparam);
}

/* Whether the routing script is written for a KEMI engine rather than in the native language. */
int push_shim_kemi_engine(void)
{
	return sr_kemi_eng_get() != NULL;
}

/* KSR.push.* for KEMI scripts. The Rust functions take the same arguments as their native
 * counterparts; `str *` has the layout of push_strv_t. */
#define PUSH_KEMI(name, fn, p1)                                                        \
	{                                                                                  \
		str_init("push"), str_init(name), SR_KEMIP_INT, fn,                            \
		{                                                                              \
			p1, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE \
		}                                                                              \
	}

static sr_kemi_t push_kemi_exports[] = {
	PUSH_KEMI("push_suspend", push_rs_kemi_suspend, SR_KEMIP_NONE),
	PUSH_KEMI("push_suspend_aor", push_rs_kemi_suspend_aor, SR_KEMIP_STR),
	PUSH_KEMI("push_resume", push_rs_kemi_resume, SR_KEMIP_NONE),
	PUSH_KEMI("push_resume_aor", push_rs_kemi_resume_aor, SR_KEMIP_STR),
	PUSH_KEMI("push_register", push_rs_kemi_register, SR_KEMIP_NONE),
	PUSH_KEMI("push_check", push_rs_kemi_check, SR_KEMIP_NONE),
	PUSH_KEMI("push_failed", push_rs_kemi_failed, SR_KEMIP_NONE),
	PUSH_KEMI("push_cluster_relay", push_rs_kemi_cluster_relay, SR_KEMIP_NONE),
	{{0, 0}, {0, 0}, 0, NULL, {0, 0, 0, 0, 0, 0}}};

int push_shim_kemi_register(void)
{
	return sr_kemi_modules_add(push_kemi_exports);
}

/* A device registered while a resumed call still rings: add branches for the AOR's current
 * contacts (those already tried are skipped by tm). Returns the number of new branches, or <0. */
int push_shim_append_branches(unsigned int index, unsigned int label, const char *table)
{
	struct cell *t = NULL;
	struct cell *current;
	str stable;
	/* tm reads contact->s: it must be a str, empty for "every contact of the AOR". */
	str every_contact = STR_NULL;
	int ret;

	if(!have_registrar)
		return -10;
	current = tmb.t_gett();
	if(tmb.t_lookup_ident(&t, index, label) < 0) {
		t = NULL;
		ret = -1;
		goto out;
	}
	if((t->flags & T_CANCELED) || t->uas.status >= 200) {
		ret = -2;
		goto out;
	}
	stable.s = (char *)table;
	stable.len = strlen(table);
	if(regb.lookup_to_dset(t->uas.request, &stable, NULL) != 1) {
		ret = -3;
		goto out;
	}
	ret = tmb.t_append_branches(&every_contact);
out:
	if(t)
		tmb.unref_cell(t);
	tmb.t_sett(current, T_BR_UNDEFINED);
	return ret;
}

/* ---- usrloc and script callbacks --------------------------------------------------------------- */

static void ul_event(ucontact_t *c, int type, void *param)
{
	push_contact_event_t ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	strv(&ev.aor, c->aor);
	strv(&ev.contact, &c->c);
	strv(&ev.instance, &c->instance);
	strv(&ev.user_agent, &c->user_agent);
	strv(&ev.received, &c->received);
	ev.reg_id = c->reg_id;
	ev.expires = (long)c->expires;
	push_rs_contact_event(&ev);
}

int push_shim_register_ulcb(void)
{
	if(!have_usrloc)
		return -1;
	return ulb.register_ulcb(
			UL_CONTACT_INSERT | UL_CONTACT_UPDATE | UL_CONTACT_DELETE | UL_CONTACT_EXPIRE,
			ul_event, 0) < 0 ? -1 : 0;
}

/* The request whose route is running in this process, for headers added to its replies. */
static struct sip_msg *current_request = NULL;

/* The request being routed in this process, or NULL: in usrloc's callbacks, the REGISTER whose
 * save() changed the contact, for what usrloc does not keep (Contact header parameters). */
struct sip_msg *push_shim_current_request(void)
{
	return current_request;
}

/* What the request being routed in this process is: 0 none (a timer, an RPC, a DMQ worker), 1 a
 * REGISTER (a binding a phone made here), 2 a KDMQ (dmq handling a node's message inline), 3
 * another request. */
int push_shim_current_request_kind(void)
{
	struct sip_msg *m = current_request;

	if(m == NULL || m->first_line.type != SIP_REQUEST) {
		return 0;
	}
	if(m->first_line.u.request.method_value == METHOD_REGISTER) {
		return 1;
	}
	if(m->first_line.u.request.method.len == 4
			&& strncasecmp(m->first_line.u.request.method.s, "KDMQ", 4) == 0) {
		return 2;
	}
	return 3;
}

static int pre_script(struct sip_msg *msg, unsigned int flags, void *param)
{
	current_request = msg;
	push_rs_script_edge(0);
	return 1;
}

static int post_script(struct sip_msg *msg, unsigned int flags, void *param)
{
	current_request = NULL;
	push_rs_script_edge(1);
	return 1;
}

/* Adds a header line (with its CRLF) to every reply of the request being routed, e.g. the
 * Feature-Caps of RFC 8599 to the 2xx that save() is about to send. */
/* Adds a header to the reply Kamailio will send for `msg`: for a request, to the reply the script
 * sends (a reply lump); for a reply being relayed (onreply_route), to that reply itself. */
int push_shim_add_reply_header(struct sip_msg *msg, const char *hdr, int len)
{
	struct lump *anchor;
	char *copy;

	if(msg == NULL)
		msg = current_request;
	if(msg == NULL)
		return -1;
	if(msg->first_line.type == SIP_REQUEST)
		return add_lump_rpl(msg, (char *)hdr, len, LUMP_RPL_HDR) ? 0 : -1;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0)
		return -1;
	anchor = anchor_lump(msg, msg->unparsed - msg->buf, 0, 0);
	if(anchor == NULL)
		return -1;
	copy = pkg_malloc(len);
	if(copy == NULL)
		return -1;
	memcpy(copy, hdr, len);
	if(insert_new_lump_before(anchor, copy, len, 0) == NULL) {
		pkg_free(copy);
		return -1;
	}
	return 0;
}

/* Request-route edges: usrloc events seen while a request is processed are sent after the route
 * (and so after save() sent the REGISTER's reply). */
int push_shim_register_script_cbs(void)
{
	if(register_script_cb(pre_script, PRE_SCRIPT_CB | REQUEST_CB, 0) < 0)
		return -1;
	return register_script_cb(post_script, POST_SCRIPT_CB | REQUEST_CB, 0);
}

/* ---- statistics resets ------------------------------------------------------------------------ */
/* The module's statistics are function statistics (their values live in the module's shared block),
 * so Kamailio's stats.reset_statistics cannot zero them; it does zero every process's row of the
 * counter, which function statistics otherwise leave unused. The module marks each counter's row
 * (a 1 in one process's slot) and takes an all-zero sum as "reset since marked". */

#define PUSH_MAX_COUNTERS 64
static counter_handle_t push_counters[PUSH_MAX_COUNTERS];
static int push_counter_known[PUSH_MAX_COUNTERS];

/* Counter i's handle in this process, looked up by name the first time. */
static counter_handle_t *push_counter(int i, const char *name)
{
	if(i < 0 || i >= PUSH_MAX_COUNTERS || _cnts_vals == NULL)
		return NULL;
	if(!push_counter_known[i]) {
		if(counter_lookup(&push_counters[i], "push", name) < 0)
			return NULL;
		push_counter_known[i] = 1;
	}
	return &push_counters[i];
}

/* 1 if counter i (statistic `name`) was reset since it was last marked (every process's row zero),
 * 0 if not, -1 if unknown or the counters are not allocated yet (before the children's fork). */
int push_shim_counter_was_reset(int i, const char *name)
{
	counter_handle_t *h = push_counter(i, name);
	if(h == NULL)
		return -1;
	return counter_get_raw_val(*h) == 0 ? 1 : 0;
}

/* Marks counter i (statistic `name`) in this process's row. */
int push_shim_counter_mark(int i, const char *name)
{
	counter_handle_t *h = push_counter(i, name);
	if(h == NULL)
		return -1;
	counter_add(*h, 1);
	return 0;
}

/* ---- xhttp_prom ---------------------------------------------------------------------------------- */
/* Labelled metrics go to xhttp_prom's own metrics: created through its module parameters
 * (prom_counter, prom_gauge, prom_histogram) at mod_init, updated through its KEMI functions,
 * which every Kamailio version since 5.6 exports with the same names and parameters. */

int push_shim_prom_loaded(void)
{
	return find_module_by_name("xhttp_prom") != NULL;
}

/* Creates one metric as modparam("xhttp_prom", param, spec) would; spec must stay allocated. */
int push_shim_prom_create(const char *param, const char *spec)
{
	return set_mod_param_regex("xhttp_prom", (char *)param, PARAM_STRING, (void *)spec);
}

static sr_kemi_t *push_prom_fn[PUSH_PROM_OPS][4];
static sip_msg_t push_prom_msg;

static sr_kemi_t *push_kemi_find(const char *module, const char *fname)
{
	sr_kemi_module_t *mods = sr_kemi_modules_get();
	int n = sr_kemi_modules_size_get();
	int i, j;
	int mlen = strlen(module), flen = strlen(fname);

	for(i = 0; i < n; i++) {
		if(mods[i].mname.len != mlen || strncmp(mods[i].mname.s, module, mlen) != 0
				|| mods[i].kexp == NULL)
			continue;
		for(j = 0; mods[i].kexp[j].fname.s != NULL; j++) {
			if(mods[i].kexp[j].fname.len == flen
					&& strncmp(mods[i].kexp[j].fname.s, fname, flen) == 0)
				return &mods[i].kexp[j];
		}
	}
	return NULL;
}

/* Finds xhttp_prom's KEMI functions; 0 if all are there. */
int push_shim_prom_bind(void)
{
	static const char *ops[PUSH_PROM_OPS] = {
			"counter_inc", "counter_reset", "gauge_set", "histogram_observe"};
	char name[64];
	int op, n;

	for(op = 0; op < PUSH_PROM_OPS; op++) {
		for(n = 0; n < 4; n++) {
			snprintf(name, sizeof(name), "%s_l%d", ops[op], n);
			push_prom_fn[op][n] = push_kemi_find("xhttp_prom", name);
			if(push_prom_fn[op][n] == NULL)
				return -1;
		}
	}
	return 0;
}

typedef int (*push_ki_s_f)(sip_msg_t *, str *);
typedef int (*push_ki_ss_f)(sip_msg_t *, str *, str *);
typedef int (*push_ki_sss_f)(sip_msg_t *, str *, str *, str *);
typedef int (*push_ki_ssss_f)(sip_msg_t *, str *, str *, str *, str *);
typedef int (*push_ki_ssssss_f)(sip_msg_t *, str *, str *, str *, str *, str *);
typedef int (*push_ki_si_f)(sip_msg_t *, str *, int);
typedef int (*push_ki_sis_f)(sip_msg_t *, str *, int, str *);
typedef int (*push_ki_siss_f)(sip_msg_t *, str *, int, str *, str *);
typedef int (*push_ki_sisss_f)(sip_msg_t *, str *, int, str *, str *, str *);

/* One update of a metric: op (push_prom_op), its name, the number (counter_inc: `count`; gauge_set
 * and histogram_observe: `number`, text), and 0 to 3 label values. */
int push_shim_prom_update(int op, const char *name, int count, const char *number,
		const char **labels, int nlabels)
{
	str s_name, s_num, l[3];
	sr_kemi_t *k;
	int i;

	if(op < 0 || op >= PUSH_PROM_OPS || nlabels < 0 || nlabels > 3)
		return -1;
	k = push_prom_fn[op][nlabels];
	if(k == NULL || k->func == NULL)
		return -1;
	s_name.s = (char *)name;
	s_name.len = strlen(name);
	for(i = 0; i < nlabels; i++) {
		l[i].s = (char *)labels[i];
		l[i].len = strlen(labels[i]);
	}
	if(op == PUSH_PROM_COUNTER_INC) {
		switch(nlabels) {
			case 0: return ((push_ki_si_f)k->func)(&push_prom_msg, &s_name, count);
			case 1: return ((push_ki_sis_f)k->func)(&push_prom_msg, &s_name, count, &l[0]);
			case 2:
				return ((push_ki_siss_f)k->func)(&push_prom_msg, &s_name, count, &l[0], &l[1]);
			default:
				return ((push_ki_sisss_f)k->func)(
						&push_prom_msg, &s_name, count, &l[0], &l[1], &l[2]);
		}
	}
	if(op == PUSH_PROM_COUNTER_RESET) {
		switch(nlabels) {
			case 0: return ((push_ki_s_f)k->func)(&push_prom_msg, &s_name);
			case 1: return ((push_ki_ss_f)k->func)(&push_prom_msg, &s_name, &l[0]);
			case 2: return ((push_ki_sss_f)k->func)(&push_prom_msg, &s_name, &l[0], &l[1]);
			default:
				return ((push_ki_ssss_f)k->func)(&push_prom_msg, &s_name, &l[0], &l[1], &l[2]);
		}
	}
	s_num.s = (char *)number;
	s_num.len = strlen(number);
	switch(nlabels) {
		case 0: return ((push_ki_ss_f)k->func)(&push_prom_msg, &s_name, &s_num);
		case 1: return ((push_ki_sss_f)k->func)(&push_prom_msg, &s_name, &s_num, &l[0]);
		case 2:
			return ((push_ki_ssss_f)k->func)(&push_prom_msg, &s_name, &s_num, &l[0], &l[1]);
		default:
			return ((push_ki_ssssss_f)k->func)(
					&push_prom_msg, &s_name, &s_num, &l[0], &l[1], &l[2]);
	}
}

/* ---- DMQ (enable_dmq): the "push" peer ---- */

static dmq_api_t dmqb;
static dmq_peer_t *push_peer = NULL;
/* bcast_message copies it: no answer callback (a lost message is logged by dmq itself). */
static dmq_resp_cback_t push_no_answer_cb = {NULL, NULL};
static str push_dmq_content_type = str_init("application/json");
static str push_dmq_ok = str_init("OK");
static str push_dmq_bad = str_init("Bad Request");
static str push_dmq_error = str_init("Server Internal Error");

/* Runs in a DMQ worker for each message of the "push" peer: hands the body to Rust (which only
 * queues it for the dispatcher) and answers with the code Rust chose. */
static int push_dmq_message(struct sip_msg *msg, peer_reponse_t *resp, dmq_node_t *node)
{
	char *body = NULL;
	int len = 0;
	int code;
	str from = {NULL, 0};
	str call_id = {NULL, 0};

	if(parse_headers(msg, HDR_EOH_F, 0) == 0 && msg->content_length != NULL) {
		len = get_content_length(msg);
		body = get_body(msg);
		/* never past the received bytes, whatever Content-Length claims */
		if(body != NULL && (body < msg->buf || body > msg->buf + msg->len)) {
			body = NULL;
		} else if(body != NULL && len > (int)(msg->buf + msg->len - body)) {
			len = (int)(msg->buf + msg->len - body);
		}
	}
	if(body == NULL || len <= 0) {
		code = 400;
	} else {
		/* The sender's DMQ address (its server_address): the From of its request, read from the
		 * message (not from the node list, which another process may change meanwhile). */
		if(node != NULL && parse_from_header(msg) == 0 && msg->from != NULL
				&& msg->from->parsed != NULL) {
			from = get_from(msg)->uri;
		}
		/* The Call-ID: a request tm retransmitted (DMQ answers statelessly) has the same one. */
		if(msg->callid != NULL) {
			call_id = msg->callid->body;
		}
		code = push_rs_dmq_message(body, len, from.s, from.len, call_id.s, call_id.len);
	}
	resp->resp_code = code;
	resp->reason = code == 200 ? push_dmq_ok
								: (code == 400 ? push_dmq_bad : push_dmq_error);
	return 0;
}

int push_shim_bind_dmq(const char *peer_id)
{
	dmq_peer_t peer;

	if(find_export("bind_dmq", 0, 0) == NULL) {
		return -1;
	}
	if(dmq_load_api(&dmqb) != 0) {
		return -2;
	}
	memset(&peer, 0, sizeof(peer));
	peer.peer_id.s = (char *)peer_id;
	peer.peer_id.len = strlen(peer_id);
	peer.description.s = (char *)peer_id;
	peer.description.len = strlen(peer_id);
	peer.callback = push_dmq_message;
	peer.init_callback = NULL;
	push_peer = dmqb.register_dmq_peer(&peer);
	return push_peer == NULL ? -3 : 0;
}

int push_shim_set_dst_uri(struct sip_msg *msg, const char *uri, int len)
{
	str u;

	u.s = (char *)uri;
	u.len = len;
	return set_dst_uri(msg, &u) == 0 ? 0 : -1;
}

int push_shim_dmq_bcast(const char *body, int len)
{
	str b;

	if(push_peer == NULL) {
		return -1;
	}
	b.s = (char *)body;
	b.len = len;
	return dmqb.bcast_message(
			push_peer, &b, NULL, &push_no_answer_cb, 1, &push_dmq_content_type);
}
