// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title Hearth Test Token (HTT)
/// @notice A development-chain ERC-20: the deployer can mint freely, so it has no value anywhere.
contract HearthToken is ERC20, Ownable {
    constructor() ERC20("Hearth Test Token", "HTT") Ownable(msg.sender) {}

    /// @notice Faucet for local and test networks; only the deployer may call it.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
