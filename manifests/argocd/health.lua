-- Argo CD health check for llamaops.dev/LlamaDeployment (llama-operator).
--
-- The source of truth: hack/generate_argocd.py copies this file into
-- argocd-cm-patch.yaml, and tests/unit/test_argocd_health.py runs it with lupa.
--
-- Argo CD runs checks from argocd-cm without the string, math and io libraries, and
-- passes every number as a Lua number (a json.Number arrives as a string). So this
-- script uses base functions (type, tostring, tonumber, select, ipairs, next),
-- table.concat and the .. operator only, and treats every field as possibly missing.
--
--   Healthy      phase Ready, condition Ready=True, status for the current generation,
--                no rollout in progress
--   Progressing  no status yet; status for an older generation; no plan chosen yet;
--                phase Pending or Progressing (the first start downloads the model,
--                which can take long); condition Rollout=True: a canary rollout in
--                progress (Starting, Progressing, Paused or Promoting), even while the
--                endpoint is Ready, as Argo Rollouts reports a rollout; phase Ready
--                while condition Ready is not True
--   Degraded     condition Reconciled=False for the current generation: its reconcile
--                failed (an apply the API server refused, say) and is being retried,
--                checked before the status is judged stale (a failure leaves
--                status.observedGeneration as it was); condition Planned=False; a closed gate (LicenseAccepted=False: the
--                model licence's use policy is not accepted; ModelAccessible=False:
--                no access to a gated model; Authenticated=False with reason
--                APIKeyRequired or SecretMissing: no API key to serve with), which waits
--                for a person, so it is not shown as progress; condition RolledBack=True: a canary failed its
--                checks and was rolled back, and the spec change is held back until
--                the spec changes again; phase Failed or Degraded

local function field(value, key)
  if type(value) ~= "table" then
    return nil
  end
  return value[key]
end

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

local function condition(conditions, kind)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if field(c, "type") == kind then
      return c
    end
  end
  return nil
end

-- "l4 (1x NVIDIA-L4, none)": pool, GPUs per replica and the serving quantization.
local function plan_summary(plan)
  local pool = field(plan, "pool")
  if pool == nil then
    return nil
  end
  local details = {}
  local gpus, product = field(plan, "gpusPerReplica"), field(plan, "gpuProduct")
  if gpus ~= nil and product ~= nil then
    details[#details + 1] = text(gpus) .. "x " .. text(product)
  elseif product ~= nil then
    details[#details + 1] = text(product)
  end
  if field(plan, "quantization") ~= nil then
    details[#details + 1] = text(plan.quantization)
  end
  if #details == 0 then
    return text(pool)
  end
  return text(pool) .. " (" .. table.concat(details, ", ") .. ")"
end

-- The first of the conditions' messages that is there and not empty.
local function message_of(...)
  for i = 1, select("#", ...) do
    local m = field((select(i, ...)), "message")
    if m ~= nil and m ~= "" then
      return text(m)
    end
  end
  return nil
end

local function verdict(status, message)
  return {status = status, message = message}
end

local function assess(o)
  local status = field(o, "status")
  if type(status) ~= "table" or next(status) == nil then
    return verdict("Progressing", "Waiting for the operator to report status")
  end

  -- Without metadata.generation (a bare API emulator) the status counts as current,
  -- as the operator itself treats a Deployment without one.
  local generation = tonumber(field(field(o, "metadata"), "generation"))
  local observed = tonumber(status.observedGeneration)

  -- A reconcile of this generation failed (an apply the API server refused, say): the
  -- spec is not, or not all, applied, and retrying may not heal it. A failed reconcile
  -- leaves the rest of the status as it was, status.observedGeneration included, so this
  -- goes before the stale-status check.
  local reconciled = condition(status.conditions, "Reconciled")
  local tried = tonumber(field(reconciled, "observedGeneration"))
  if field(reconciled, "status") == "False"
    and (generation == nil or tried == nil or tried >= generation) then
    local m = message_of(reconciled) or "the last reconcile failed"
    local reason = field(reconciled, "reason")
    if reason ~= nil then
      m = text(reason) .. ": " .. m
    end
    return verdict("Degraded", m)
  end

  if generation ~= nil and (observed == nil or observed < generation) then
    local m = "Waiting for the operator to reconcile generation " .. text(generation)
    if observed ~= nil then
      m = m .. " (status is for generation " .. text(observed) .. ")"
    end
    return verdict("Progressing", m)
  end

  local conditions = status.conditions
  local planned = condition(conditions, "Planned")
  local ready = condition(conditions, "Ready")
  local phase = status.phase
  local plan = plan_summary(status.plan)

  if field(planned, "status") == "False" then
    local reason = field(planned, "reason")
    local m = message_of(planned) or "the spec cannot be planned"
    if reason ~= nil then
      m = text(reason) .. ": " .. m
    end
    return verdict("Degraded", m)
  end

  for _, kind in ipairs({"LicenseAccepted", "ModelAccessible"}) do
    local gate = condition(conditions, kind)
    if field(gate, "status") == "False" then
      local m = message_of(gate) or "see the LlamaDeployment's conditions"
      local reason = field(gate, "reason")
      if reason ~= nil then
        m = text(reason) .. ": " .. m
      end
      return verdict("Degraded", m)
    end
  end

  -- No API key to serve with (AuthOptional, an open endpoint chosen on purpose, is fine).
  local auth = condition(conditions, "Authenticated")
  local auth_reason = field(auth, "reason")
  if field(auth, "status") == "False" and auth_reason ~= "AuthOptional" then
    local m = message_of(auth) or "see the LlamaDeployment's conditions"
    if auth_reason ~= nil then
      m = text(auth_reason) .. ": " .. m
    end
    return verdict("Degraded", m)
  end

  -- An aborted canary: the old template keeps serving (phase Degraded), and the message
  -- has the measured numbers against the thresholds.
  local rolled_back = condition(conditions, "RolledBack")
  if field(rolled_back, "status") == "True" then
    local m = message_of(rolled_back) or "the canary was rolled back; see the conditions"
    return verdict("Degraded", "RolledBack: " .. m)
  end

  if phase == "Failed" or phase == "Degraded" then
    local detail = message_of(ready, planned) or "see the LlamaDeployment's conditions"
    local m = text(phase) .. ": " .. detail
    if plan ~= nil then
      m = m .. "; planned on " .. plan
    end
    return verdict("Degraded", m)
  end

  if field(planned, "status") ~= "True" then
    local m = "Planning: waiting for the operator to choose a plan"
    local detail = message_of(planned)
    if detail ~= nil then
      m = m .. " (" .. detail .. ")"
    end
    return verdict("Progressing", m)
  end

  -- A canary rollout in progress: part of the traffic goes to the new template, so a
  -- Ready endpoint is not done yet.
  local rollout = condition(conditions, "Rollout")
  if field(rollout, "status") == "True" then
    local m = "Rollout"
    local reason = field(rollout, "reason")
    if reason ~= nil then
      m = m .. " " .. text(reason)
    end
    return verdict("Progressing", m .. ": " .. (message_of(rollout) or "in progress"))
  end

  local ready_status = field(ready, "status")
  local ready_generation = tonumber(field(ready, "observedGeneration"))
  local ready_current = generation == nil or ready_generation == nil
    or ready_generation >= generation
  if phase == "Ready" and ready_status == "True" and ready_current then
    local replicas = tonumber(field(field(o, "spec"), "replicas")) or tonumber(status.replicas) or 0
    local available = tonumber(status.readyReplicas) or 0
    local m
    if replicas == 0 then
      m = "Scaled to zero"
    else
      m = text(available) .. "/" .. text(replicas) .. " ready"
    end
    if plan ~= nil then
      m = m .. " on " .. plan
    end
    return verdict("Healthy", m)
  end

  local m
  if phase == "Ready" then
    m = "Ready condition is " .. text(ready_status or "missing")
    if not ready_current then
      m = m .. " for generation " .. text(ready_generation)
    end
    local detail = message_of(ready)
    if detail ~= nil then
      m = m .. ": " .. detail
    end
  else
    m = text(phase or "Unknown phase") .. ": " .. (message_of(ready) or "waiting for serving pods")
  end
  if plan ~= nil then
    m = m .. "; planned on " .. plan
  end
  return verdict("Progressing", m)
end

local hs = assess(obj)
return hs
