# The routing of cfg-examples/push-registrar.lua, for app_python3: tests/python.rs runs a wake-up
# call with it, to show that KSR.push.* and the resume into a KEMI function work from Python too.
import KSR as KSR


def mod_init():
    return Router()


class Router:
    def __init__(self):
        pass

    def child_init(self, rank):
        return 0

    # app_python3 looks these up on every relayed request and reply; without them a stale
    # AttributeError surfaces in the next KSR call.
    def ksr_onsend_route(self, msg):
        return 1

    def ksr_reply_route(self, msg):
        return 1

    def ksr_request_route(self, msg):
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0:
                KSR.tm.t_relay()
            elif KSR.is_ACK():
                if KSR.tm.t_check_trans() > 0:
                    KSR.tm.t_relay()
            else:
                KSR.sl.sl_send_reply(404, "Not Here")
            return 1
        KSR.tm.t_check_trans()
        if KSR.is_REGISTER():
            if KSR.push.push_check() == -2:
                KSR.sl.sl_send_reply(555, "Push Notification Service Not Supported")
                return 1
            if KSR.registrar.save("location", 0) < 0:
                KSR.sl.sl_reply_error()
            return 1
        if KSR.is_INVITE():
            KSR.rr.record_route()
            if KSR.registrar.lookup("location") > 0:
                KSR.tm.t_relay()
                return 1
            KSR.tm.t_on_failure("ksr_wake_timeout")
            rc = KSR.push.push_suspend()
            if rc == -1:
                KSR.sl.send_reply(480, "Temporarily Unavailable")
            elif rc == -2:
                KSR.sl.send_reply(503, "Service Unavailable")
            elif rc < -2:
                KSR.sl.send_reply(500, "Server Error")
            return 1
        KSR.sl.sl_send_reply(405, "Method Not Allowed")
        return 1

    # A held call, continued by the push module (app_python3 passes no event name).
    def ksr_push_resume(self, msg, event=None):
        if KSR.push.push_failed() > 0 or KSR.registrar.lookup("location") < 0:
            KSR.tm.t_reply(480, "Temporarily Unavailable")
            return 1
        KSR.tm.t_relay()
        return 1

    def ksr_wake_timeout(self, msg):
        if KSR.tm.t_is_canceled() > 0:
            return 1
        if KSR.tm.t_check_status("408") > 0:
            KSR.tm.t_reply(480, "Temporarily Unavailable")
        return 1
