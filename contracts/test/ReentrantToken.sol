// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title ReentrantToken (tests only)
/// @notice A hostile ERC-20: when the contract it is armed against moves its tokens (transfer or transferFrom), it
/// calls back into that contract with prepared calldata before returning. Tests deploy an escrow bound to this token to
/// show that every entry point refuses to be re-entered.
/// @dev The token can also act as an account (`execute`), so it can be the requestor or the provider of an escrow and
/// its re-entrant call passes the caller checks: only the reentrancy guard stands in the way.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public attack;
    /// When true a failed re-entrant call is recorded and the outer call goes on; when false its revert bubbles up.
    bool public swallow;
    uint256 public attempts;
    uint256 public successes;
    bytes public lastRevert;

    constructor() ERC20("Reentrant Token", "REENTER") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Re-enter `target_` with `attack_` the next time `target_` moves tokens.
    function arm(address target_, bytes calldata attack_, bool swallow_) external {
        target = target_;
        attack = attack_;
        swallow = swallow_;
    }

    /// @notice Lets the token act as an account: approve, open, claim, refund as itself.
    function execute(address to, bytes calldata data) external returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call(data);
        if (!ok) _bubble(ret);
        return ret;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address armedAgainst = target;
        if (armedAgainst == address(0) || msg.sender != armedAgainst) return;
        // Disarmed first: one re-entry per arming, not an endless loop.
        target = address(0);
        attempts += 1;
        (bool ok, bytes memory ret) = armedAgainst.call(attack);
        if (ok) {
            successes += 1;
        } else {
            lastRevert = ret;
            if (!swallow) _bubble(ret);
        }
    }

    function _bubble(bytes memory ret) private pure {
        assembly {
            revert(add(ret, 32), mload(ret))
        }
    }
}
