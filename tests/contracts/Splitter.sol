// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Forwards every payment in equal parts to two payees: value moves by internal calls only,
/// so an indexer that looks at transaction senders and recipients alone misses the payees.
contract Splitter {
    address payable public immutable first;
    address payable public immutable second;

    event Split(address indexed payer, uint256 amount);

    constructor(address payable first_, address payable second_) {
        first = first_;
        second = second_;
    }

    function split() external payable {
        uint256 half = msg.value / 2;
        first.transfer(half);
        second.transfer(msg.value - half);
        emit Split(msg.sender, msg.value);
    }

    function fail() external pure {
        revert("always fails");
    }
}
