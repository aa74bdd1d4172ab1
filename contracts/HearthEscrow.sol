// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title HearthEscrow
/// @notice One escrow per agreement. The requestor deposits a budget, then pays the provider off-chain with signed
/// cumulative vouchers; the provider redeems the latest voucher at any time, and the requestor takes back the
/// unclaimed rest after expiry. On-chain cost per agreement is O(1) however many vouchers are exchanged.
/// @dev The provider may claim until the escrow is closed, even past expiry: expiry only lets the requestor close it.
contract HearthEscrow is EIP712, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @dev Packed into three slots: requestor+expiresAt+closed, provider, deposited+claimed.
    struct Escrow {
        address requestor;
        uint64 expiresAt;
        bool closed;
        address provider;
        uint128 deposited;
        uint128 claimed;
    }

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 agreementId,uint256 cumulativeAmount)");

    IERC20 public immutable token;

    mapping(bytes32 agreementId => Escrow) private _escrows;

    event EscrowOpened(
        bytes32 indexed agreementId,
        address indexed requestor,
        address indexed provider,
        uint256 amount,
        uint64 expiresAt
    );
    event EscrowToppedUp(bytes32 indexed agreementId, uint256 amount, uint256 deposited);
    event VoucherClaimed(bytes32 indexed agreementId, address indexed provider, uint256 paid, uint256 cumulativeAmount);
    event EscrowReleased(bytes32 indexed agreementId, uint256 refunded);
    event EscrowRefunded(bytes32 indexed agreementId, address indexed requestor, uint256 refunded);

    error EscrowAlreadyExists(bytes32 agreementId);
    error EscrowNotFound(bytes32 agreementId);
    error EscrowClosed(bytes32 agreementId);
    error ZeroProvider();
    error ZeroAmount();
    error ExpiryInPast(uint64 expiresAt, uint256 nowSec);
    error NotRequestor(address caller);
    error NotProvider(address caller);
    error InvalidVoucherSignature(address recovered);
    error NothingToClaim(uint256 cumulativeAmount, uint256 claimed);
    error ClaimExceedsDeposit(uint256 cumulativeAmount, uint256 deposited);
    error NotExpired(uint64 expiresAt, uint256 nowSec);

    constructor(IERC20 token_) EIP712("HearthEscrow", "1") {
        token = token_;
    }

    /// @notice Deposits `amount` for a new agreement; msg.sender becomes its requestor.
    function open(bytes32 agreementId, address provider, uint256 amount, uint64 expiresAt) external nonReentrant {
        if (_escrows[agreementId].requestor != address(0)) revert EscrowAlreadyExists(agreementId);
        if (provider == address(0)) revert ZeroProvider();
        if (amount == 0) revert ZeroAmount();
        if (expiresAt <= block.timestamp) revert ExpiryInPast(expiresAt, block.timestamp);

        _escrows[agreementId] = Escrow({
            requestor: msg.sender,
            expiresAt: expiresAt,
            closed: false,
            provider: provider,
            deposited: SafeCast.toUint128(amount),
            claimed: 0
        });
        emit EscrowOpened(agreementId, msg.sender, provider, amount, expiresAt);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Adds to an open escrow's deposit, so a longer job needs no new agreement.
    function topUp(bytes32 agreementId, uint256 amount) external nonReentrant {
        Escrow storage e = _open(agreementId);
        if (msg.sender != e.requestor) revert NotRequestor(msg.sender);
        if (amount == 0) revert ZeroAmount();

        uint128 deposited = SafeCast.toUint128(uint256(e.deposited) + amount);
        e.deposited = deposited;
        emit EscrowToppedUp(agreementId, amount, deposited);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Redeems the requestor's cumulative voucher: pays what it adds over earlier claims.
    /// @param release When true the provider also gives up the rest, which goes back to the requestor now and
    /// closes the escrow: a finished job settles without waiting for expiry.
    function claim(bytes32 agreementId, uint256 cumulativeAmount, bytes calldata signature, bool release)
        external
        nonReentrant
    {
        Escrow storage e = _open(agreementId);
        if (msg.sender != e.provider) revert NotProvider(msg.sender);

        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(voucherDigest(agreementId, cumulativeAmount), signature);
        if (err != ECDSA.RecoverError.NoError || recovered != e.requestor) revert InvalidVoucherSignature(recovered);

        uint256 claimed = e.claimed;
        uint256 deposited = e.deposited;
        if (cumulativeAmount <= claimed) revert NothingToClaim(cumulativeAmount, claimed);
        if (cumulativeAmount > deposited) revert ClaimExceedsDeposit(cumulativeAmount, deposited);

        uint256 paid = cumulativeAmount - claimed;
        uint256 refunded = release ? deposited - cumulativeAmount : 0;
        // Bounded by deposited (a uint128), so the cast cannot truncate.
        e.claimed = uint128(cumulativeAmount);
        if (release) e.closed = true;

        emit VoucherClaimed(agreementId, msg.sender, paid, cumulativeAmount);
        token.safeTransfer(msg.sender, paid);
        if (release) {
            emit EscrowReleased(agreementId, refunded);
            if (refunded > 0) token.safeTransfer(e.requestor, refunded);
        }
    }

    /// @notice The provider ends the agreement without a further claim: the unclaimed rest goes back to the requestor
    /// now and the escrow closes. Used when a job ends with nothing (more) to claim.
    function release(bytes32 agreementId) external nonReentrant {
        Escrow storage e = _open(agreementId);
        if (msg.sender != e.provider) revert NotProvider(msg.sender);

        uint256 refunded = uint256(e.deposited) - e.claimed;
        e.closed = true;
        emit EscrowReleased(agreementId, refunded);
        if (refunded > 0) token.safeTransfer(e.requestor, refunded);
    }

    /// @notice After expiry the requestor takes back what was not claimed, and the escrow closes.
    function refund(bytes32 agreementId) external nonReentrant {
        Escrow storage e = _open(agreementId);
        if (msg.sender != e.requestor) revert NotRequestor(msg.sender);
        if (block.timestamp < e.expiresAt) revert NotExpired(e.expiresAt, block.timestamp);

        uint256 refunded = uint256(e.deposited) - e.claimed;
        e.closed = true;
        emit EscrowRefunded(agreementId, msg.sender, refunded);
        if (refunded > 0) token.safeTransfer(msg.sender, refunded);
    }

    function escrows(bytes32 agreementId)
        external
        view
        returns (
            address requestor,
            address provider,
            uint256 deposited,
            uint256 claimed,
            uint64 expiresAt,
            bool closed
        )
    {
        Escrow storage e = _escrows[agreementId];
        return (e.requestor, e.provider, e.deposited, e.claimed, e.expiresAt, e.closed);
    }

    /// @notice The EIP-712 digest a requestor signs; binds chain id, this contract and the agreement.
    function voucherDigest(bytes32 agreementId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, agreementId, cumulativeAmount)));
    }

    function _open(bytes32 agreementId) private view returns (Escrow storage e) {
        e = _escrows[agreementId];
        if (e.requestor == address(0)) revert EscrowNotFound(agreementId);
        if (e.closed) revert EscrowClosed(agreementId);
    }
}
