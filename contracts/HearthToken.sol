// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Hearth Test Token (HTT)
/// @notice The ERC-20 Hearth settles in when a chain has no token of its own choosing.
/// @dev The faucet is a constructor flag rather than a `block.chainid == 31337` test: development and test chains use
/// many ids (31337, 1337, one per test), and a chain id cannot tell a private devnet from a public chain, while the
/// deployer always knows which one it deploys to. `hearth deploy` sets it only when asked (`--faucet`) and refuses it
/// on well-known public chains; a token deployed without it can never mint beyond its initial supply.
/// With the faucet on, anyone may mint: on a development chain the token is worthless, and every node can then fund
/// itself without the deployer's key.
contract HearthToken is ERC20 {
    /// @notice True only on development chains: `mint` is open to anyone.
    bool public immutable faucet;

    error FaucetDisabled();

    constructor(bool faucet_, uint256 initialSupply) ERC20("Hearth Test Token", "HTT") {
        faucet = faucet_;
        if (initialSupply > 0) _mint(msg.sender, initialSupply);
    }

    /// @notice Development faucet; reverts with FaucetDisabled on a token deployed for a real chain.
    function mint(address to, uint256 amount) external {
        if (!faucet) revert FaucetDisabled();
        _mint(to, amount);
    }
}
