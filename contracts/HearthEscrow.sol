// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title HearthEscrow
/// @notice One escrow per (requestor, agreement). The requestor deposits a budget, then pays the provider off-chain
/// with signed cumulative vouchers; the provider redeems the latest voucher at any time, and the requestor takes back
/// the unclaimed rest once the escrow has expired and the claim grace after expiry has passed. On-chain cost per
/// agreement is O(1) however many vouchers are exchanged.
/// @dev Escrows are keyed by keccak256(abi.encode(requestor, agreementId)), not by the agreement id alone: whoever
/// learns an id before it is opened can open an escrow under their own key only, which neither blocks nor touches the
/// requestor's. Events still carry the agreement id as the public record.
/// The provider may claim until the escrow is closed, even past expiry. Only `expiresAt + claimGraceSec` lets the
/// requestor close it (refund): were refund open from the second of expiry, a requestor holding back its last vouchers
/// could close the escrow ahead of a provider that claims on a timer, as payment channels learnt (Raiden's settlement
/// timeout, Filecoin's settling delay). The grace is one immutable value per deployment, so a requestor and a provider
/// can read the window from the contract before they open or trust an escrow.
/// The guard uses transient storage (EIP-1153, Cancun and later), which costs ~100 gas where a storage guard costs
/// thousands; the contracts are compiled for Prague, so a chain without Cancun cannot run them anyway.
contract HearthEscrow is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev Two slots: provider+expiresAt+closed, deposited+claimed. The requestor is not stored: it is part of the
    /// key, and every call either is the requestor (msg.sender) or names it.
    struct Escrow {
        address provider;
        uint64 expiresAt;
        bool closed;
        uint128 deposited;
        uint128 claimed;
    }

    /// @notice One agreement in an {openMany} batch.
    struct OpenRequest {
        bytes32 agreementId;
        address provider;
        uint256 amount;
        uint64 expiresAt;
    }

    /// @notice One voucher in a {claimMany} batch.
    struct ClaimRequest {
        address requestor;
        bytes32 agreementId;
        uint256 cumulativeAmount;
        bytes signature;
        bool releaseRest;
    }

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 agreementId,uint256 cumulativeAmount)");

    IERC20 public immutable token;

    /// @notice Seconds after an escrow's expiry during which the provider can still claim and the requestor cannot yet
    /// refund. Set at deployment, the same for every escrow of this contract, and never changed.
    uint64 public immutable claimGraceSec;

    mapping(bytes32 key => Escrow) private _escrows;

    event EscrowOpened(
        bytes32 indexed agreementId,
        address indexed requestor,
        address indexed provider,
        uint256 amount,
        uint64 expiresAt
    );
    event EscrowToppedUp(bytes32 indexed agreementId, address indexed requestor, uint256 amount, uint256 deposited);
    event VoucherClaimed(
        bytes32 indexed agreementId,
        address indexed requestor,
        address indexed provider,
        uint256 paid,
        uint256 cumulativeAmount
    );
    event EscrowReleased(bytes32 indexed agreementId, address indexed requestor, uint256 refunded);
    event EscrowRefunded(bytes32 indexed agreementId, address indexed requestor, uint256 refunded);

    error EscrowAlreadyExists(address requestor, bytes32 agreementId);
    error EscrowNotFound(address requestor, bytes32 agreementId);
    error EscrowClosed(bytes32 agreementId);
    error ZeroProvider();
    error ZeroAmount();
    error EmptyBatch();
    error ExpiryInPast(uint64 expiresAt, uint256 nowSec);
    error NotProvider(address caller);
    error InvalidVoucherSignature(address recovered);
    error NothingToClaim(uint256 cumulativeAmount, uint256 claimed);
    error ClaimExceedsDeposit(uint256 cumulativeAmount, uint256 deposited);
    /// @notice A refund before `refundableAt` (the escrow's expiry plus {claimGraceSec}); it works from that second on.
    error RefundTooEarly(uint256 refundableAt, uint256 nowSec);

    /// @param claimGraceSec_ The window after expiry that is the provider's alone (zero: refund from the second of
    /// expiry, which lets a requestor front-run the provider's last claim).
    constructor(IERC20 token_, uint64 claimGraceSec_) EIP712("HearthEscrow", "1") {
        token = token_;
        claimGraceSec = claimGraceSec_;
    }

    /// @notice Deposits `amount` for a new agreement; msg.sender is its requestor.
    function open(bytes32 agreementId, address provider, uint256 amount, uint64 expiresAt) external nonReentrant {
        _create(agreementId, provider, amount, expiresAt);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Opens several escrows with one token transfer for their total: a job with many providers costs one
    /// transaction. All or nothing: one bad request reverts the batch.
    function openMany(OpenRequest[] calldata requests) external nonReentrant {
        if (requests.length == 0) revert EmptyBatch();
        uint256 total;
        for (uint256 i; i < requests.length; ++i) {
            OpenRequest calldata r = requests[i];
            _create(r.agreementId, r.provider, r.amount, r.expiresAt);
            total += r.amount;
        }
        token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @notice Adds to an open escrow's deposit, so a longer job needs no new agreement. Only the requestor can,
    /// since the key is derived from msg.sender.
    function topUp(bytes32 agreementId, uint256 amount) external nonReentrant {
        Escrow storage e = _live(msg.sender, agreementId);
        if (amount == 0) revert ZeroAmount();

        uint128 deposited = SafeCast.toUint128(uint256(e.deposited) + amount);
        e.deposited = deposited;
        emit EscrowToppedUp(agreementId, msg.sender, amount, deposited);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Redeems the requestor's cumulative voucher: pays what it adds over earlier claims. Works until the
    /// escrow is closed: before expiry, during the claim grace and after it, until the requestor refunds.
    /// @param releaseRest When true the provider also gives up the rest, which goes back to the requestor now and
    /// closes the escrow: a finished job settles without waiting for expiry.
    function claim(
        address requestor,
        bytes32 agreementId,
        uint256 cumulativeAmount,
        bytes calldata signature,
        bool releaseRest
    ) external nonReentrant {
        (uint256 paid, uint256 refunded) = _claim(requestor, agreementId, cumulativeAmount, signature, releaseRest);
        token.safeTransfer(msg.sender, paid);
        if (refunded > 0) token.safeTransfer(requestor, refunded);
    }

    /// @notice Redeems several vouchers (any requestors, all naming msg.sender as provider) with one payment for their
    /// total; the refunds of released escrows go out once per run of consecutive claims from the same requestor.
    /// All or nothing: one bad voucher reverts the batch, so simulate first and drop what fails. Like {claim}, works
    /// during the claim grace and after it, until each escrow is closed.
    function claimMany(ClaimRequest[] calldata claims) external nonReentrant {
        if (claims.length == 0) revert EmptyBatch();
        uint256 totalPaid;
        address refundTo;
        uint256 refundDue;
        for (uint256 i; i < claims.length; ++i) {
            ClaimRequest calldata c = claims[i];
            (uint256 paid, uint256 refunded) =
                _claim(c.requestor, c.agreementId, c.cumulativeAmount, c.signature, c.releaseRest);
            totalPaid += paid;
            if (c.requestor != refundTo) {
                if (refundDue > 0) token.safeTransfer(refundTo, refundDue);
                refundTo = c.requestor;
                refundDue = 0;
            }
            refundDue += refunded;
        }
        token.safeTransfer(msg.sender, totalPaid);
        if (refundDue > 0) token.safeTransfer(refundTo, refundDue);
    }

    /// @notice The provider ends the agreement without a further claim: the unclaimed rest goes back to the requestor
    /// now and the escrow closes. Used when a job ends with nothing (more) to claim.
    function release(address requestor, bytes32 agreementId) external nonReentrant {
        Escrow storage e = _live(requestor, agreementId);
        if (msg.sender != e.provider) revert NotProvider(msg.sender);

        uint256 refunded = uint256(e.deposited) - e.claimed;
        e.closed = true;
        emit EscrowReleased(agreementId, requestor, refunded);
        if (refunded > 0) token.safeTransfer(requestor, refunded);
    }

    /// @notice From expiry plus {claimGraceSec} on, the requestor takes back what was not claimed, and the escrow
    /// closes. Before that it reverts with {RefundTooEarly}, which names the second from which it works: a provider
    /// holding vouchers has the whole grace to claim them, and may claim after it too, until the escrow closes.
    function refund(bytes32 agreementId) external nonReentrant {
        Escrow storage e = _live(msg.sender, agreementId);
        // In uint256: two uint64s cannot overflow it.
        uint256 refundableAt = uint256(e.expiresAt) + claimGraceSec;
        if (block.timestamp < refundableAt) revert RefundTooEarly(refundableAt, block.timestamp);

        uint256 refunded = uint256(e.deposited) - e.claimed;
        e.closed = true;
        emit EscrowRefunded(agreementId, msg.sender, refunded);
        if (refunded > 0) token.safeTransfer(msg.sender, refunded);
    }

    /// @notice The escrow `requestor` opened for `agreementId`; provider is zero when there is none.
    function escrows(address requestor, bytes32 agreementId)
        external
        view
        returns (address provider, uint256 deposited, uint256 claimed, uint64 expiresAt, bool closed)
    {
        Escrow storage e = _escrows[escrowKey(requestor, agreementId)];
        return (e.provider, e.deposited, e.claimed, e.expiresAt, e.closed);
    }

    /// @notice The storage key of an escrow: the agreement id alone would let anyone who learns it open it first.
    function escrowKey(address requestor, bytes32 agreementId) public pure returns (bytes32) {
        return keccak256(abi.encode(requestor, agreementId));
    }

    /// @notice The EIP-712 digest a requestor signs; binds chain id, this contract and the agreement. The requestor is
    /// bound too, without being in the message: only a signature by the escrow's own requestor redeems it.
    function voucherDigest(bytes32 agreementId, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, agreementId, cumulativeAmount)));
    }

    function _create(bytes32 agreementId, address provider, uint256 amount, uint64 expiresAt) private {
        Escrow storage e = _escrows[escrowKey(msg.sender, agreementId)];
        // A provider is set on every escrow ever opened (open refuses zero), so it marks existence.
        if (e.provider != address(0)) revert EscrowAlreadyExists(msg.sender, agreementId);
        if (provider == address(0)) revert ZeroProvider();
        if (amount == 0) revert ZeroAmount();
        if (expiresAt <= block.timestamp) revert ExpiryInPast(expiresAt, block.timestamp);

        e.provider = provider;
        e.expiresAt = expiresAt;
        e.deposited = SafeCast.toUint128(amount);
        emit EscrowOpened(agreementId, msg.sender, provider, amount, expiresAt);
    }

    /// @dev Checks and books one claim; the caller moves the tokens (once per batch in claimMany).
    function _claim(
        address requestor,
        bytes32 agreementId,
        uint256 cumulativeAmount,
        bytes calldata signature,
        bool releaseRest
    ) private returns (uint256 paid, uint256 refunded) {
        Escrow storage e = _live(requestor, agreementId);
        if (msg.sender != e.provider) revert NotProvider(msg.sender);

        (address recovered, ECDSA.RecoverError err,) =
            ECDSA.tryRecover(voucherDigest(agreementId, cumulativeAmount), signature);
        if (err != ECDSA.RecoverError.NoError || recovered != requestor) revert InvalidVoucherSignature(recovered);

        uint256 claimed = e.claimed;
        uint256 deposited = e.deposited;
        if (cumulativeAmount <= claimed) revert NothingToClaim(cumulativeAmount, claimed);
        if (cumulativeAmount > deposited) revert ClaimExceedsDeposit(cumulativeAmount, deposited);

        paid = cumulativeAmount - claimed;
        // Bounded by deposited (a uint128), so the cast cannot truncate.
        e.claimed = uint128(cumulativeAmount);
        emit VoucherClaimed(agreementId, requestor, msg.sender, paid, cumulativeAmount);
        if (releaseRest) {
            refunded = deposited - cumulativeAmount;
            e.closed = true;
            emit EscrowReleased(agreementId, requestor, refunded);
        }
    }

    function _live(address requestor, bytes32 agreementId) private view returns (Escrow storage e) {
        e = _escrows[escrowKey(requestor, agreementId)];
        if (e.provider == address(0)) revert EscrowNotFound(requestor, agreementId);
        if (e.closed) revert EscrowClosed(agreementId);
    }
}
