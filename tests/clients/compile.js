// Compile one Solidity file with solc-js; print {name: {abi, bytecode, deployed}} as JSON.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const file = process.argv[2];
const input = {
  language: "Solidity",
  sources: { [path.basename(file)]: { content: fs.readFileSync(file, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const result = {};
for (const unit of Object.values(output.contracts)) {
  for (const [name, c] of Object.entries(unit)) {
    result[name] = { abi: c.abi, bytecode: c.evm.bytecode.object, deployed: c.evm.deployedBytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
