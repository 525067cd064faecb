-- wrk script: JavaScript-tracker-like GET hits with a different visitor id per request, so hits
-- spread over the queues as real traffic does.
local counter = 0
local titles = {"Home", "Pricing", "Blog%20post%20%E2%80%93%20one", "Contact"}

-- Each wrk thread runs its own copy of this script (its own counter); its number, set here,
-- keeps the threads' visitor ids apart.
local threads = 0
function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

request = function()
  counter = counter + 1
  -- First half: a 32-bit multiplicative hash of the counter, so the id's first three hex
  -- digits, which pick the queue (QueuedTracking: hexdec of them modulo the number of queues),
  -- vary from hit to hit (exact in a double up to 3.39 million hits per thread, and an integer
  -- below 2^32 beyond). Second half: the thread and the counter, unique per hit for up to 16
  -- threads and 2^28 hits per thread.
  local id = string.format("%08x%08x", (counter * 2654435761) % 4294967296,
    ((thread_no or 0) % 16) * 268435456 + counter % 268435456)
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
