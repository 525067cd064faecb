-- wrk script: JavaScript-tracker-like GET hits with a different visitor id per request, so hits
-- spread over the queues as real traffic does.
local counter = 0
local titles = {"Home", "Pricing", "Blog%20post%20%E2%80%93%20one", "Contact"}

request = function()
  counter = counter + 1
  -- Two 32-bit multiplicative hashes: the id's first three hex digits, which pick the queue
  -- (QueuedTracking: hexdec of them modulo the number of queues), vary from hit to hit.
  local id = string.format("%08x%08x", (counter * 2654435761) % 4294967296,
    (counter * 40503 + 2166136261) % 4294967296)
  local path = "/matomo.php?idsite=1&rec=1&r=" .. counter
    .. "&action_name=" .. titles[(counter % #titles) + 1]
    .. "&url=http%3A%2F%2Fexample.com%2Fpage%2F" .. (counter % 50)
    .. "&urlref=https%3A%2F%2Fwww.google.com%2F&_id=" .. id
    .. "&_idn=0&send_image=1&cookie=1&res=1920x1080&pv_id=abc123&h=12&m=30&s=5"
    .. "&pf_net=41&pf_srv=114&pf_tfr=349&pf_dm1=1673&pf_dm2=92&pf_onl=54"
  return wrk.format("GET", path, {
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    ["Accept-Language"] = "en-US,en;q=0.9",
  })
end
