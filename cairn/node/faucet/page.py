"""The faucet's web page: one form, posting JSON to /faucet with fetch, no external assets."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Cairn faucet</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; }
  input { width: 100%; font-family: monospace; font-size: 1rem; padding: .5rem;
          box-sizing: border-box; }
  button { margin-top: .75rem; font-size: 1rem; padding: .5rem 1.5rem; }
  #result { margin-top: 1.5rem; padding: .75rem; white-space: pre-wrap; word-break: break-all; }
  .ok { background: #e6f4ea; } .error { background: #fce8e6; }
  .muted { color: #555; }
</style>
</head>
<body>
<h1>Cairn faucet</h1>
<p id="terms" class="muted">Loading…</p>
<form id="form">
  <label for="address">Your address</label>
  <input id="address" name="address" placeholder="0x…" autocomplete="off" required>
  <button id="send" type="submit">Send me ETH</button>
</form>
<div id="result" role="status"></div>
<script>
const result = document.getElementById("result");
const button = document.getElementById("send");
function show(text, kind) { result.textContent = text; result.className = kind; }
fetch("info").then(r => r.json()).then(info => {
  document.getElementById("terms").textContent =
    info.amountEth + " ETH per request, once every " + info.cooldown +
    " per address and per IP. Faucet " + info.address + " holds " + info.balanceEth + " ETH.";
}).catch(() => {
  document.getElementById("terms").textContent = "Faucet information unavailable.";
});
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  button.disabled = true;
  show("Sending…", "");
  try {
    const response = await fetch("faucet", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({address: document.getElementById("address").value.trim()}),
    });
    const body = await response.json();
    if (response.ok) {
      show("Sent " + body.amountEth + " ETH to " + body.address + ". Transaction " +
           body.txHash, "ok");
      result.dataset.txHash = body.txHash;
    } else {
      show(body.error, "error");
    }
  } catch (error) {
    show("The faucet did not answer: " + error, "error");
  } finally {
    button.disabled = false;
  }
});
</script>
</body>
</html>
"""
