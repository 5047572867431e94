-- Routing of push-lua.cfg: a registrar that wakes sleeping phones, written for app_lua (KEMI).
-- The same flow as push-registrar.cfg: REGISTER is saved (the push module learns push devices from
-- usrloc), an INVITE to a user without a live binding is held with KSR.push.push_suspend(), and the
-- push module continues it into ksr_push_resume() once a device registered again.

local FLT_TRY_FIRST_MS = 3000

function ksr_request_route()
	if KSR.maxfwd.process_maxfwd(10) < 0 then
		KSR.sl.sl_send_reply(483, "Too Many Hops")
		return
	end
	if KSR.is_CANCEL() then
		-- A CANCEL for a held call: tm answers it 200 and the INVITE 487.
		if KSR.tm.t_check_trans() > 0 then
			KSR.tm.t_relay()
		end
		return
	end
	if KSR.siputils.has_totag() > 0 then
		if KSR.rr.loose_route() > 0 then
			KSR.tm.t_relay()
		elseif KSR.is_ACK() then
			if KSR.tm.t_check_trans() > 0 then
				KSR.tm.t_relay()
			end
		else
			KSR.sl.sl_send_reply(404, "Not Here")
		end
		return
	end
	KSR.tm.t_check_trans()
	if KSR.is_REGISTER() then
		-- RFC 8599: a push service no app here serves gets 555.
		if KSR.push.push_check() == -2 then
			KSR.sl.sl_send_reply(555, "Push Notification Service Not Supported")
			return
		end
		if KSR.registrar.save("location", 0) < 0 then
			KSR.sl.sl_reply_error()
		end
		return
	end
	if KSR.is_INVITE() then
		KSR.rr.record_route()
		ksr_to_user()
		return
	end
	if KSR.is_OPTIONS() then
		KSR.sl.sl_send_reply(200, "OK")
		return
	end
	KSR.sl.sl_send_reply(405, "Method Not Allowed")
end

-- Deliver to a live binding (and push if it does not answer), or hold the call and push.
function ksr_to_user()
	if KSR.registrar.lookup("location") > 0 then
		KSR.tm.t_set_fr(0, FLT_TRY_FIRST_MS)
		KSR.tm.t_on_failure("ksr_try_push")
		KSR.tm.t_relay()
		return
	end
	ksr_hold()
end

function ksr_hold()
	-- Set before holding: a timeout while held ends in ksr_wake_timeout().
	KSR.tm.t_on_failure("ksr_wake_timeout")
	local rc = KSR.push.push_suspend()
	if rc == 1 or rc == 0 then
		-- Held (or a retransmission of a held INVITE): the push module takes it from here.
		return
	elseif rc == -1 then
		KSR.sl.send_reply(480, "Temporarily Unavailable")
	elseif rc == -2 then
		KSR.sl.send_reply(503, "Service Unavailable")
	else
		KSR.sl.send_reply(500, "Server Error")
	end
end

-- A held call, continued (runs like a failure route): a device registered, or every push failed.
function ksr_push_resume(event)
	if KSR.push.push_failed() > 0 or KSR.registrar.lookup("location") < 0 then
		KSR.tm.t_reply(480, "Temporarily Unavailable")
		return
	end
	KSR.tm.t_on_failure("ksr_wake_timeout")
	KSR.tm.t_relay()
end

function ksr_try_push()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	-- No answer from the binding that looked alive, or it could not be reached: push.
	if KSR.tm.t_check_status("408|477|480|503") > 0 then
		ksr_hold()
	end
end

function ksr_wake_timeout()
	if KSR.tm.t_is_canceled() > 0 then
		return
	end
	if KSR.tm.t_check_status("408") > 0 then
		KSR.tm.t_reply(480, "Temporarily Unavailable")
	end
end
