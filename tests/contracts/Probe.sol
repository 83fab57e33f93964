// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Called by Probe: storage, an event, a revert, value and a SELFDESTRUCT (EIP-6780 rules).
contract Child {
    uint256 public stored;

    event Stored(uint256 value, address by);

    constructor() payable {}

    function store(uint256 value) external payable returns (uint256) {
        stored = value;
        emit Stored(value, msg.sender);
        return value * 2;
    }

    function peek() external view returns (uint256) {
        return stored;
    }

    function fail(string calldata why) external pure {
        revert(why);
    }

    function boom() external {
        selfdestruct(payable(msg.sender));
    }
}

/// Exercises every frame type geth's callTracer reports, events, reverts and panics.
contract Probe {
    event Ping(address indexed from, uint256 indexed n, bytes data);

    error Nope(uint256 code);

    uint256 public counter;
    mapping(uint256 => uint256) public slots;
    Child public child;

    constructor() payable {
        child = new Child();
    }

    function ping(bytes calldata data) external payable returns (uint256) {
        counter += 1;
        emit Ping(msg.sender, counter, data);
        return counter;
    }

    function setSlot(uint256 key, uint256 value) external {
        slots[key] = value;
    }

    function fail(string calldata why) external pure {
        revert(why);
    }

    function failCustom(uint256 code) external pure {
        revert Nope(code);
    }

    function divide(uint256 a, uint256 b) external pure returns (uint256) {
        return a / b;
    }

    function nested(uint256 value) external returns (uint256) {
        uint256 doubled = child.store{value: 1 wei}(value);
        uint256 seen = child.peek();
        emit Ping(msg.sender, seen, "");
        try child.fail("inner") {} catch {}
        (bool ok,) = address(child).delegatecall(abi.encodeWithSignature("peek()"));
        require(ok, "delegatecall failed");
        return doubled + uint256(sha256(abi.encode(seen))) % 2;
    }

    function deploy(bytes32 salt) external returns (address plain, address salted) {
        plain = address(new Child());
        salted = address(new Child{salt: salt}());
    }

    function destroyChild() external {
        child.boom();
    }

    function burn(uint256 rounds) external returns (uint256 acc) {
        for (uint256 i = 0; i < rounds; i++) {
            acc = uint256(keccak256(abi.encode(acc, i)));
            slots[i] = acc;
        }
    }
}
