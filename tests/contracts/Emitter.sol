// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Events and reverts for RPC tests: indexed and unindexed fields, several logs per
/// transaction, a custom error and a require message.
contract Emitter {
    event Ping(address indexed from, uint256 indexed n, bytes32 tag);
    event Note(uint256 indexed round, string text);

    uint256 public count;

    error TooBig(uint256 n, uint256 limit);

    function ping(uint256 n) external {
        if (n > 1_000_000) revert TooBig(n, 1_000_000);
        count += 1;
        emit Ping(msg.sender, n, keccak256(abi.encode(n)));
    }

    function pingMany(uint256 first, uint256 k) external {
        for (uint256 i = 0; i < k; i++) {
            emit Ping(msg.sender, first + i, keccak256(abi.encode(first + i)));
        }
        count += k;
        emit Note(count, "batch");
    }

    function fail(string calldata why) external pure {
        require(false, why);
    }
}
