// ethers v6 against a Cairn dev node, over JsonRpcProvider (HTTP, filters polled) and
// WebSocketProvider (eth_subscribe). Exits 0 when every check holds, 1 otherwise.
//   node tests/clients/ethers_live.mjs <http url> <ws url> <Emitter artifact json>
import fs from "node:fs";
import { ethers } from "ethers";

const [httpUrl, wsUrl, artifactPath] = process.argv.slice(2);
const artifact = JSON.parse(fs.readFileSync(artifactPath, "utf8"));
const KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEAD = "0x000000000000000000000000000000000000dEaD";

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

// Wait on a condition with a deadline (polling), never on a bare delay.
async function waitFor(condition, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const steps = [];
function step(name) {
  steps.push(name);
  console.log(`- ${name}`);
}

async function main() {
  const http = new ethers.JsonRpcProvider(httpUrl, undefined, { pollingInterval: 100 });
  const ws = new ethers.WebSocketProvider(wsUrl);
  try {
    const network = await http.getNetwork();
    check(network.chainId === 31337n, `chain id ${network.chainId}`);
    check((await ws.getNetwork()).chainId === 31337n, "ws chain id");
    const wallet = new ethers.NonceManager(new ethers.Wallet(KEY0, http));

    // ---- deploy
    const factory = new ethers.ContractFactory(artifact.abi, artifact.bytecode, wallet);
    const deployed = await factory.deploy();
    await deployed.waitForDeployment();
    const address = await deployed.getAddress();
    check((await http.getCode(address)).length > 2, "contract code");
    const emitter = new ethers.Contract(address, artifact.abi, wallet);
    const overWs = new ethers.Contract(address, artifact.abi, ws);
    step(`deployed Emitter at ${address}`);

    // ---- listeners: polled filters (HTTP) and subscriptions (WebSocket)
    const viaFilter = [];
    const viaSubscription = [];
    const wsBlocks = [];
    const wsPending = new Set();
    const httpPending = new Set();
    await emitter.on("Ping", (from, n) => viaFilter.push(n));
    await overWs.on("Ping", (from, n) => viaSubscription.push(n));
    await ws.on("block", (n) => wsBlocks.push(n));
    await ws.on("pending", (hash) => wsPending.add(hash));
    await http.on("pending", (hash) => httpPending.add(hash));

    // Both listeners are installed asynchronously: send markers until each has seen one,
    // so that everything after the last marker must be seen by both.
    let marker = 1_000_000;
    await waitFor(async () => {
      await (await emitter.ping(marker)).wait();
      marker -= 1;
      const seen = (list) => list.some((n) => n >= BigInt(marker + 1));
      return seen(viaFilter) && seen(viaSubscription);
    }, "both event listeners to be installed");
    const firstBlock = (await http.getBlockNumber()) + 1;
    step("listeners installed");

    // ---- the run: events, transfers, a multi-log transaction
    const sent = [];
    const expected = [];
    for (let i = 0; i < 12; i++) {
      const tx = await emitter.ping(i);
      sent.push(tx.hash);
      expected.push(BigInt(i));
      if (i % 4 === 3) {
        const transfer = await wallet.sendTransaction({ to: DEAD, value: 1000n + BigInt(i) });
        sent.push(transfer.hash);
      }
    }
    const many = await emitter.pingMany(100, 3);
    sent.push(many.hash);
    expected.push(100n, 101n, 102n);
    const last = await many.wait();
    check(last.status === 1, "pingMany status");
    check(last.logs.length === 4, `pingMany logs ${last.logs.length}`);
    const tail = (list) => list.slice(list.indexOf(0n));
    await waitFor(
      () => tail(viaFilter).length >= expected.length && tail(viaSubscription).length >= expected.length,
      "every Ping event through filters and subscriptions",
    );
    check(JSON.stringify(tail(viaFilter).map(String)) === JSON.stringify(expected.map(String)),
      `events via filter: ${tail(viaFilter)}`);
    check(JSON.stringify(tail(viaSubscription).map(String)) === JSON.stringify(expected.map(String)),
      `events via subscription: ${tail(viaSubscription)}`);
    step(`${expected.length} events through eth_newFilter polling and through eth_subscribe`);

    const head = await http.getBlockNumber();
    await waitFor(() => wsBlocks.includes(head), "the WebSocket block listener to reach the head");
    for (let n = firstBlock; n <= head; n++) {
      check(wsBlocks.includes(n), `newHeads missed block ${n}`);
    }
    await waitFor(() => sent.every((h) => wsPending.has(h) && httpPending.has(h)),
      "pending transactions through subscription and filter");
    step(`blocks ${firstBlock}..${head} via newHeads; ${sent.length} pending hashes via both`);

    // ---- reverts decoded by ethers from the node's error data
    try {
      await emitter.ping.staticCall(2_000_000);
      check(false, "ping(2000000) should revert");
    } catch (error) {
      check(error.code === "CALL_EXCEPTION", `revert code ${error.code}`);
      check(error.revert && error.revert.name === "TooBig", `custom error ${error.revert}`);
      check(error.revert.args[0] === 2_000_000n, "custom error args");
    }
    try {
      await emitter.ping(2_000_000);  // estimateGas fails before anything is sent
      check(false, "sending ping(2000000) should revert");
    } catch (error) {
      check(error.code === "CALL_EXCEPTION", `revert code ${error.code}`);
      check(emitter.interface.parseError(error.data).name === "TooBig", `revert data ${error.data}`);
    }
    try {
      await emitter.fail("no way");
      check(false, "fail() should revert");
    } catch (error) {
      check(error.code === "CALL_EXCEPTION", `require code ${error.code}`);
      check(error.reason === "no way", `require reason ${error.reason}`);
    }
    step("reverts: custom error and require reason decoded");

    // ---- a JSON-RPC batch of 100, explicit and automatic
    const payload = [];
    for (let i = 0; i < 100; i++) {
      payload.push({ jsonrpc: "2.0", id: 1000 + i, method: i % 2 ? "eth_blockNumber" : "eth_getBalance",
        params: i % 2 ? [] : [DEAD, "latest"] });
    }
    const answers = await http._send(payload);
    check(answers.length === 100, `batch answers ${answers.length}`);
    const ids = new Set(answers.map((a) => a.id));
    for (let i = 0; i < 100; i++) check(ids.has(1000 + i), `batch id ${1000 + i}`);
    check(answers.every((a) => a.result !== undefined && a.error === undefined), "batch results");
    const balances = await Promise.all(Array.from({ length: 100 }, () => http.getBalance(DEAD)));
    check(balances.every((b) => b === balances[0] && b > 0n), "automatically batched balances");
    step("batch of 100 requests");

    // ---- dev accounts: eth_sendTransaction, personal_sign, eth_signTypedData_v4
    const signer = await http.getSigner(1);
    const before = await http.getBalance(DEAD);
    const viaNode = await signer.sendTransaction({ to: DEAD, value: 12345n });
    const mined = await viaNode.wait();
    check(mined.status === 1 && mined.from === signer.address, "eth_sendTransaction from a dev account");
    const after = await http.getBalance(DEAD, mined.blockNumber);  // ethers caches equal calls 250 ms
    check(after === before + 12345n, `eth_sendTransaction value arrived: ${before} -> ${after}`);
    const signature = await signer.signMessage("hello cairn");
    check(ethers.verifyMessage("hello cairn", signature) === signer.address, "personal_sign");
    const domain = { name: "Cairn", version: "1", chainId: 31337, verifyingContract: address };
    const types = { Mail: [{ name: "to", type: "address" }, { name: "contents", type: "string" }] };
    const value = { to: DEAD, contents: "typed" };
    const typed = await signer.signTypedData(domain, types, value);
    check(ethers.verifyTypedData(domain, types, value, typed) === signer.address, "eth_signTypedData_v4");
    step("dev signer: sendTransaction, signMessage, signTypedData");

    // ---- impersonation: a JsonRpcSigner for an address whose key nobody has
    const whale = "0x00000000000000000000000000000000000Ba1E5";
    await http.send("anvil_setBalance", [whale, ethers.toQuantity(ethers.parseEther("5"))]);
    await http.send("anvil_impersonateAccount", [whale]);
    const impersonated = new ethers.JsonRpcSigner(http, whale);
    const fromWhale = await (await impersonated.sendTransaction({ to: DEAD, value: 1n })).wait();
    check(fromWhale.status === 1 && fromWhale.from.toLowerCase() === whale.toLowerCase(), "impersonated send");
    step("impersonated account sends without a key");

    emitter.removeAllListeners();
    overWs.removeAllListeners();
    ws.removeAllListeners();
    http.removeAllListeners();
    console.log(`OK ${steps.length} steps`);
  } finally {
    http.destroy();
    await ws.destroy();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
